package signals

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/store"
)

// storeSink persists changes in the controller's store, as the controller's Sink does (minus xDS).
type storeSink struct{ st *store.Store }

func (s storeSink) Apply(_ context.Context, changes []Change) error {
	for _, c := range changes {
		if c.Revocation != nil {
			if _, err := s.st.Revocations().Put(c.Revocation); err != nil {
				return err
			}
			continue
		}
		old, err := s.st.Risk().Get(c.Risk.GetSubject().Key())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := s.st.Risk().Put(MergeRisk(old, c.Risk)); err != nil {
			return err
		}
	}
	return nil
}

// signMany pre-signs n distinct session-revoked SETs.
func signMany(b *testing.B, f *fixture, n int) []string {
	b.Helper()
	toks := make([]string, n)
	for i := range toks {
		c := f.claims()
		c.JTI = fmt.Sprintf("bench-%d", i)
		toks[i] = f.sign(b, c)
	}
	return toks
}

// BenchmarkPushPersisted is one SET from HTTP body to durable state: verify (ES256), de-dup check, Apply into
// bbolt (fsync), mark seen (fsync), 202.
func BenchmarkPushPersisted(b *testing.B) {
	f := newFixture(b, func(c *ReceiverConfig) { c.Logger = nil })
	f.recv.sink = storeSink{f.st}
	toks := signMany(b, f, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(toks[i]))
		req.Header.Set("Content-Type", MediaTypeSET)
		rec := httptest.NewRecorder()
		f.recv.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkVerify is SET verification alone (JWS parse, ES256 signature, claims), without de-dup or Apply.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, func(c *ReceiverConfig) { c.Logger = nil })
	tok := f.sign(b, f.claims())
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := f.recv.verify(context.Background(), tok, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMap is the event mapping of a complex-subject session-revoked.
func BenchmarkMap(b *testing.B) {
	set, err := parseClaims([]byte(setJSON(`{"format":"complex","user":{"format":"email","email":"a@b"},"session":{"format":"opaque","id":"s"}}`,
		oneEvent("session-revoked", `{"event_timestamp":1759999900}`))))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for range b.N {
		Map(set)
	}
}
