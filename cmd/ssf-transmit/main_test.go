package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
)

const (
	iss = "https://idp.example.com"
	aud = "https://controller.example.com"
)

type sink struct {
	mu      sync.Mutex
	changes []signals.Change
}

func (s *sink) Apply(_ context.Context, c []signals.Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.changes = append(s.changes, c...)
	return nil
}

// take returns the changes applied since the last call.
func (s *sink) take() []signals.Change {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.changes
	s.changes = nil
	return c
}

// setup makes a key with -gen-key, publishes its JWKS with -print-jwks, and starts a receiver on 127.0.0.1 that
// trusts it.
func setup(t *testing.T) (keyPath, url string, got *sink) {
	t.Helper()
	dir := t.TempDir()
	keyPath = filepath.Join(dir, "transmitter.pem")
	var out bytes.Buffer
	if err := run([]string{"-gen-key", keyPath}, &out); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	if err := run([]string{"-gen-key", keyPath}, &out); err == nil {
		t.Fatal("-gen-key overwrote an existing key")
	}
	out.Reset()
	if err := run([]string{"-key", keyPath, "-print-jwks"}, &out); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(out.Bytes(), &set); err != nil || len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID == "" {
		t.Fatalf("JWKS %s: %v", out.String(), err)
	}
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	got = &sink{}
	recv, err := signals.NewReceiver(signals.ReceiverConfig{
		Transmitters: []signals.TransmitterConfig{{Issuer: iss, Audience: []string{aud}, JWKSFile: jwksPath, PushAuthorization: "Bearer demo"}},
		Sink:         got, Dedup: signals.NewStoreDedup(st, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	return keyPath, srv.URL + "/ssf/push", got
}

func TestPushEvents(t *testing.T) {
	keyPath, url, got := setup(t)
	base := []string{"-key", keyPath, "-iss", iss, "-aud", aud, "-url", url, "-authorization", "Bearer demo"}
	tests := []struct {
		args  []string
		kinds []string // of the changes the SET makes, in order
		nb    bool     // revocation with not_before; false: withheld
		risk  string
	}{
		{[]string{"-event", "session-revoked", "-sub-uri", "spiffe://example.org/agent/planner"}, []string{signals.KindSPIFFE}, true, ""},
		// No sidecar knows the identity provider's sessions or devices: the user is revoked too.
		{[]string{"-event", "session-revoked", "-sub-email", "alice@example.com", "-session", "s-42"},
			[]string{signals.KindSession, signals.KindUserEmail}, true, ""},
		{[]string{"-event", "credential-compromise", "-sub-uri", "spiffe://example.org/agent/planner"}, []string{signals.KindSPIFFE}, true, ""},
		{[]string{"-event", "account-disabled", "-sub-iss-sub", iss + ",user-123", "-reason", "left the company"}, []string{signals.KindUserIssSub}, false, ""},
		{[]string{"-event", "risk-level-change", "-sub-email", "alice@example.com", "-field", "current_level=MEDIUM"}, []string{signals.KindUserEmail}, false, "MEDIUM"},
		{[]string{"-event", "device-compliance-change", "-sub-opaque", "u-1", "-device", "laptop-7"},
			[]string{signals.KindDevice, signals.KindUserOpaque}, true, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			if err := run(append(base, tt.args...), &out); err != nil {
				t.Fatalf("%v: %s", err, out.String())
			}
			if !strings.Contains(out.String(), "202 Accepted") {
				t.Fatalf("output %q", out.String())
			}
			changes := got.take()
			if len(changes) != len(tt.kinds) {
				t.Fatalf("%d changes, want %d: %v", len(changes), len(tt.kinds), changes)
			}
			for i, c := range changes {
				if tt.risk != "" {
					if c.Risk.GetRiskLevel() != tt.risk || c.Risk.GetSubject().GetKind() != tt.kinds[i] {
						t.Fatalf("risk %v", c.Risk)
					}
					continue
				}
				if c.Revocation.GetSubject().GetKind() != tt.kinds[i] || (c.Revocation.GetNotBefore() != nil) != tt.nb {
					t.Fatalf("revocation %v", c.Revocation)
				}
			}
		})
	}
}

func TestRefusalsAndUsageErrors(t *testing.T) {
	keyPath, url, _ := setup(t)
	base := []string{"-key", keyPath, "-iss", iss, "-url", url, "-authorization", "Bearer demo", "-event", "session-revoked"}
	var out bytes.Buffer
	if err := run(append(base, "-aud", "https://someone-else", "-sub-email", "a@example.com"), &out); err == nil ||
		!strings.Contains(out.String(), "400") || !strings.Contains(out.String(), signals.CodeInvalidAudience) {
		t.Fatalf("wrong audience: %v, %q", err, out.String())
	}
	out.Reset()
	if err := run(append(base, "-aud", aud, "-sub-email", "a@example.com", "-print"), &out); err != nil || strings.Count(out.String(), ".") != 2 {
		t.Fatalf("-print: %v, %q", err, out.String())
	}
	for name, args := range map[string][]string{
		"no subject":        append(base, "-aud", aud),
		"two subjects":      append(base, "-aud", aud, "-sub-email", "a@example.com", "-sub-opaque", "x"),
		"bad iss_sub":       append(base, "-aud", aud, "-sub-iss-sub", "nocomma"),
		"unknown event":     {"-key", keyPath, "-iss", iss, "-aud", aud, "-url", url, "-event", "no-such-event", "-sub-opaque", "x"},
		"no key":            {"-print-jwks"},
		"missing flags":     {"-key", keyPath},
		"bad event time":    append(base, "-aud", aud, "-sub-opaque", "x", "-event-time", "yesterday"),
		"bad field":         append(base, "-aud", aud, "-sub-opaque", "x", "-field", "novalue"),
		"key is not a file": {"-key", filepath.Dir(keyPath), "-print-jwks"},
	} {
		if err := run(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
