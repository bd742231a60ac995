package signals

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzPushBody: any body gets 202 or 400 with an RFC 8935 error code, never a panic or another status.
func FuzzPushBody(f *testing.F) {
	// De-duplication in memory: the store's (fsync per SET) is tested on its own, and at fuzzing rates its disk
	// writes would make each input take milliseconds.
	fx := newFixture(f, func(c *ReceiverConfig) { c.Logger = nil; c.Dedup = &memDedup{seen: map[string]bool{}} })
	f.Add(fx.sign(f, fx.claims()))
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.e30.")
	f.Add("a.b.c")
	f.Add("a.b.c.d.e")
	f.Add("")
	f.Add(strings.Repeat("A", 70_000))
	codes := []string{CodeInvalidRequest, CodeInvalidKey, CodeInvalidIssuer, CodeInvalidAudience,
		CodeAuthenticationFailed, CodeAccessDenied, CodeInvalidState}
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("Content-Type", MediaTypeSET)
		rec := httptest.NewRecorder()
		fx.recv.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusAccepted:
		case http.StatusBadRequest:
			var eb setErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || !slices.Contains(codes, eb.Err) {
				t.Fatalf("400 body %q", rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}

// FuzzParseClaims: the claims of a correctly signed SET are still untrusted input; parsing and mapping them
// never panics, and every change Map makes is well formed.
func FuzzParseClaims(f *testing.F) {
	f.Add([]byte(setJSON(`{"format":"complex","user":{"format":"email","email":"a@b"},"session":{"format":"opaque","id":"s"}}`,
		oneEvent("session-revoked", `{"event_timestamp":1759999900}`))))
	f.Add([]byte(setJSON(`{"format":"aliases","identifiers":[{"format":"uri","uri":"spiffe://td/a"}]}`,
		oneEvent("risk-level-change", `{"principal":"USER","current_level":"HIGH"}`))))
	f.Add([]byte(`{"iss":"x","jti":"j","iat":1e10,"events":{"a":{}}}`))
	f.Add([]byte(`{"iss":"x","jti":"j","iat":-1,"events":{}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		set, err := parseClaims(payload)
		if err != nil {
			return
		}
		changes, _ := Map(set)
		for _, c := range changes {
			var key string
			if c.Revocation != nil {
				key = c.Revocation.GetSubject().Key()
			} else {
				key = c.Risk.GetSubject().Key()
			}
			if key == "" {
				t.Fatalf("change with an empty subject: %+v", c)
			}
		}
	})
}

// FuzzParseSubject: no panic; what parses marshals back to the same identifier.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{
		`{"format":"email","email":"a@example.com"}`,
		`{"format":"complex","user":{"format":"iss_sub","iss":"i","sub":"s"},"device":{"format":"opaque","id":"d"}}`,
		`{"format":"aliases","identifiers":[{"format":"phone_number","phone_number":"+12065550100"},{"format":"did","url":"did:x:1"}]}`,
		`{"format":"ip-addresses","ip-addresses":["::1"]}`,
		`{"subject_type":"iss-sub","iss":"i","sub":"s"}`,
		`{"format":"complex","session":{"format":"aliases","identifiers":[{"format":"opaque","id":"x"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ParseSubject(data)
		if err != nil {
			return
		}
		raw, err := json.Marshal(id)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseSubject(raw)
		if err != nil || back.String() != id.String() {
			t.Fatalf("round trip of %s: %s, %v", data, raw, err)
		}
		_ = subjectsOf(id, "", "https://iss")
	})
}

// memDedup is an in-memory Dedup for fuzzing.
type memDedup struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (m *memDedup) Seen(_ context.Context, iss, jti string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[iss+"\x00"+jti], nil
}

func (m *memDedup) Mark(_ context.Context, iss, jti string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen[iss+"\x00"+jti] = true
	return nil
}
