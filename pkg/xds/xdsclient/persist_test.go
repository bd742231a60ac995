package xdsclient

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/xds"
)

// TestStateFileRestoresAfterRestart: a client restarted while the controller is down enforces the state it had
// (policies, revocations, versions), and resumes from those versions when the controller is back.
func TestStateFileRestoresAfterRestart(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	if err := c.w.SetTrustBundle(trustBundle(ca, 1)); err != nil {
		t.Fatal(err)
	}
	if err := c.w.UpsertRevocation(spiffeRevocation("r1", "spiffe://example.org/agent/b")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "state", "xds-state.json")
	persisted := func(cfg *ClientConfig) {
		cfg.StateFile, cfg.TrustDomain = file, td.Name()
		cfg.Validators = map[string]xds.Validator{agentauthv1.PolicyType: cedarValidator}
	}
	sc := c.sidecar("a", nil, persisted)
	sc.waitSynced(t)
	sc.stop() // the last update is written when Run ends
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", info.Mode().Perm())
	}
	want := sc.Status().Versions
	c.stop()

	cl, err := NewClient(ClientConfig{Target: c.addr, TLSConfig: testTLS, StateFile: file, TrustDomain: td.Name(),
		Validators: map[string]xds.Validator{agentauthv1.PolicyType: cedarValidator}})
	if err != nil {
		t.Fatal(err)
	}
	st, status := cl.State(), cl.Status()
	if !status.Synced || status.RestoredAt.IsZero() || status.Connected {
		t.Fatalf("restored status: %+v", status)
	}
	for typeURL, v := range want {
		if status.Versions[typeURL] != v {
			t.Errorf("%s: restored version %q, want %q", typeURL, status.Versions[typeURL], v)
		}
	}
	if _, ok := st.Policy("p1"); !ok {
		t.Error("policy p1 not restored")
	}
	if r := st.Revoked("spiffe", "", "spiffe://example.org/agent/b", time.Now(), time.Now()); r.GetId() != "r1" {
		t.Errorf("revocation r1 not enforced after restore: %v", r)
	}

	// Back online, the restored client resumes: nothing changed, so nothing is sent again.
	c.start()
	sc2 := c.sidecar("a", nil, persisted)
	waitFor(t, "reconnect", func() bool { return sc2.Status().Connected })
	if _, ok := sc2.State().Revocation("r1"); !ok {
		t.Error("revocation lost on resume")
	}
	if err := c.w.UpsertRevocation(spiffeRevocation("r2", "spiffe://example.org/agent/c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation r2", func() bool { _, ok := sc2.State().Revocation("r2"); return ok })
	if got := sc2.Status().Received; got != 1 {
		t.Errorf("resumed client received %d resources, want only the new revocation", got)
	}
}

// TestStateFileRefused: a corrupt file, one from another trust domain or with an invalid resource is refused;
// the client starts empty (fail-closed) and not synced.
func TestStateFileRefused(t *testing.T) {
	ca := testca.New(t, td)
	c := newController(t, ca)
	if err := c.w.SetPolicies([]*agentauthv1.Policy{policy("p1", permitAll)}); err != nil {
		t.Fatal(err)
	}
	if err := c.w.SetTrustBundle(trustBundle(ca, 1)); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "xds-state.json")
	sc := c.sidecar("a", nil, func(cfg *ClientConfig) { cfg.StateFile, cfg.TrustDomain = good, td.Name() })
	sc.waitSynced(t)
	sc.stop()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	for name, tc := range map[string]struct {
		data        string
		trustDomain string
		validators  map[string]xds.Validator
		want        string
	}{
		"truncated":            {data: string(data[:len(data)/2]), trustDomain: td.Name(), want: "corrupt"},
		"altered":              {data: strings.Replace(string(data), `"version":"`, `"version":"x`, 1), trustDomain: td.Name(), want: "checksum"},
		"another trust domain": {data: string(data), trustDomain: "other.org", want: `trust domain "example.org"`},
		"invalid resource": {data: string(data), trustDomain: td.Name(), want: "refuses",
			validators: map[string]xds.Validator{agentauthv1.PolicyType: func(string, proto.Message) error { return errors.New("refuses") }}},
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "xds-state.json")
			if err := os.WriteFile(file, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
			cl, err := NewClient(ClientConfig{Target: c.addr, TLSConfig: testTLS, StateFile: file, TrustDomain: tc.trustDomain,
				Validators: tc.validators})
			if err != nil {
				t.Fatal(err)
			}
			if cl.Status().Synced || cl.State().Len(agentauthv1.PolicyType) != 0 {
				t.Fatal("a refused state was applied")
			}
			_, err = cl.restore()
			if !errors.Is(err, ErrStateRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrStateRefused naming %q", err, tc.want)
			}
		})
	}
}
