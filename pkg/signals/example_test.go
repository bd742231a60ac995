package signals_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "signals-example")
	defer os.RemoveAll(dir)
	// The transmitter's key, and its public JWKS where the receiver can read it.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key := jose.JSONWebKey{Key: priv, KeyID: "k1", Algorithm: string(jose.ES256)}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	_ = os.WriteFile(filepath.Join(dir, "jwks.json"), jwks, 0o600)
	st, _ := store.Open(filepath.Join(dir, "controller.db"), store.Options{})
	defer st.Close()

	recv, err := signals.NewReceiver(signals.ReceiverConfig{
		Transmitters: []signals.TransmitterConfig{{Issuer: "https://idp.example.com",
			Audience: []string{"https://controller.example.com"}, JWKSFile: filepath.Join(dir, "jwks.json")}},
		Sink: signals.SinkFunc(func(_ context.Context, changes []signals.Change) error {
			for _, c := range changes {
				fmt.Println("revoke", c.Revocation.GetSubject().GetValue(), "issued before", c.Revocation.GetNotBefore().AsTime().Unix())
			}
			return nil // a real Sink persists and publishes before returning
		}),
		Dedup: signals.NewStoreDedup(st, nil),
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(recv) // the RFC 8935 push endpoint
	defer srv.Close()

	set, _ := signals.Sign(key, signals.SETClaims{
		Issuer: "https://idp.example.com", Audience: []string{"https://controller.example.com"},
		Subject: signals.SubjectID{Format: signals.FormatURI, URI: "spiffe://example.org/agent/a"},
		Events:  map[string]map[string]any{signals.EventSessionRevoked: {"event_timestamp": 1760000000}},
	})
	resp, err := http.Post(srv.URL, signals.MediaTypeSET, strings.NewReader(set))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// revoke spiffe://example.org/agent/a issued before 1760000000
	// 202 Accepted
}

func ExampleMap() {
	set := &signals.SET{Issuer: "https://idp.example.com", JTI: "j1",
		Subject: &signals.SubjectID{Format: signals.FormatComplex, Members: map[string]signals.SubjectID{
			"user":    {Format: signals.FormatEmail, Email: "alice@example.com"},
			"session": {Format: signals.FormatOpaque, ID: "s-42"},
		}},
		Events: []signals.Event{{Type: signals.EventSessionRevoked}},
	}
	changes, _ := signals.Map(set)
	fmt.Println(changes[0].Revocation.GetSubject().Key())
	// Output: session|https://idp.example.com|s-42
}
