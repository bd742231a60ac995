package sidecar

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/agentauth/agentauth/pkg/policy"
)

// Redacted replaces every secret value in /config_dump.
const Redacted = "[redacted]"

// configDump is what /config_dump answers: what this sidecar runs with, now.
type configDump struct {
	// Config is the effective configuration (defaults applied), secrets redacted.
	Config any `json:"config"`
	// XDS is the controller connection's state; absent without a controller.
	XDS *xdsDump `json:"xds,omitempty"`
	// Policy is the policy set ingress enforces; absent without one.
	Policy *policyDump `json:"policy,omitempty"`
	// Credentials are this workload's own credentials: who it is and when they expire.
	Credentials credentialsDump `json:"credentials"`
}

type xdsDump struct {
	Connected   bool              `json:"connected"`
	Synced      bool              `json:"synced"`
	LastContact *time.Time        `json:"last_contact,omitempty"`
	Versions    map[string]string `json:"versions"` // type URL → system version of the last applied update
	LastNACK    string            `json:"last_nack,omitempty"`
}

type policyDump struct {
	Version string   `json:"version"`
	IDs     []string `json:"ids"`
}

type credentialsDump struct {
	SPIFFEID   string     `json:"spiffe_id,omitempty"`
	X509Expiry *time.Time `json:"x509_svid_expiry,omitempty"`
	WITExpiry  *time.Time `json:"wit_expiry,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// serveConfigDump answers GET /config_dump on the admin listener. The admin listener is unauthenticated, so the
// dump holds no secret: every value under a key that names one is replaced by Redacted (redactSecrets), and no
// key material, token or header value is read into it.
func (s *Sidecar) serveConfigDump(w http.ResponseWriter, _ *http.Request) {
	d := configDump{Config: s.redactedConfig()}
	if s.cp != nil {
		st := s.cp.client.Status()
		x := &xdsDump{Connected: st.Connected, Synced: st.Synced, Versions: st.Versions, LastNACK: st.LastNACK}
		if !st.LastContact.IsZero() {
			x.LastContact = &st.LastContact
		}
		d.XDS = x
	}
	if s.engine != nil {
		if set := s.engine.Set(); set != nil {
			d.Policy = &policyDump{Version: set.Version(), IDs: policyIDs(set)}
		}
	}
	if svid, err := s.src.GetX509SVID(); err != nil {
		d.Credentials.Error = "no X.509-SVID: " + err.Error()
	} else {
		exp := svid.Certificates[0].NotAfter
		d.Credentials.SPIFFEID, d.Credentials.X509Expiry = svid.ID.String(), &exp
	}
	if wit, err := s.src.GetWIT(); err == nil {
		d.Credentials.WITExpiry = &wit.Expiry
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(d)
}

func policyIDs(set *policy.Set) []string {
	ps := set.Policies()
	ids := make([]string, 0, len(ps))
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	sort.Strings(ids)
	return ids
}

// redactedConfig is the effective config as a generic tree (YAML keys), secrets redacted.
func (s *Sidecar) redactedConfig() any {
	raw, err := s.cfg.Marshal()
	if err != nil {
		return map[string]string{"error": "rendering the config: " + err.Error()}
	}
	var tree any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		return map[string]string{"error": "rendering the config: " + err.Error()}
	}
	return redactSecrets(tree)
}

// redactSecrets replaces the value of every scalar whose key names a secret: a token, a password, a secret, an
// authorization header value. Keys that hold where a secret is (…File, …Dir, …Path, …URL, …Endpoint, …Socket)
// or a header's name (…Header) are kept: the operator needs them, and they are no secret. Matching by name
// rather than by field keeps a secret added to the config later out of the dump too.
func redactSecrets(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, val := range t {
			if _, nested := val.(map[string]any); !nested && secretKey(k) {
				t[k] = Redacted
				continue
			}
			t[k] = redactSecrets(val)
		}
	case []any:
		for i := range t {
			t[i] = redactSecrets(t[i])
		}
	}
	return v
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	for _, safe := range []string{"file", "files", "dir", "path", "url", "endpoint", "socket", "header"} {
		if strings.HasSuffix(k, safe) {
			return false
		}
	}
	for _, secret := range []string{"token", "secret", "password", "passphrase", "authorization", "apikey", "privatekey", "credential"} {
		if strings.Contains(k, secret) {
			return true
		}
	}
	return false
}
