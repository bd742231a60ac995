package wpt

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// typed fails the fuzz run unless err is nil or wraps a refusal reason.
func typed(t *testing.T, err error) {
	t.Helper()
	if err != nil && autherr.Of(err) == nil {
		t.Fatalf("untyped error: %v", err)
	}
}

func FuzzVerifyWIT(f *testing.F) {
	e := newEnv(f, "EdDSA")
	v := e.verifier(f, func(c *VerifierConfig) { c.WITCacheSize = -1 })
	f.Add(e.wit)
	f.Add(specWIT)
	f.Add(tamper(e.wit, specWIT))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, token string) {
		w, err := v.VerifyWIT(context.Background(), token)
		typed(t, err)
		if err == nil && (w == nil || w.Raw != token || w.Key.Key == nil) {
			t.Fatalf("accepted without a complete WIT: %+v", w)
		}
		if err != nil && w != nil {
			t.Fatal("WIT returned with an error")
		}
	})
}

func FuzzVerifyRequest(f *testing.F) {
	e := newEnv(f, "EdDSA")
	p := e.prover(f)
	wpt, err := p.Mint(ProofParams{Audience: testAud, TxnToken: "txn", Now: testNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(e.wit, wpt, "txn")
	f.Add(e.wit, wpt, "")
	f.Add(specWIT, specWPT, "")
	f.Add(e.wit, "eyJhbGciOiJFZERTQSJ9.e30.AAAA", "")
	f.Fuzz(func(t *testing.T, wit, wpt, txn string) {
		// A fresh replay cache each time, so the seed proof can be accepted more than once.
		v := e.verifier(t, nil)
		res, err := v.VerifyRequest(context.Background(), Request{WIT: wit, WPT: wpt, TxnToken: txn,
			Audiences: []string{testAud}})
		typed(t, err)
		if err != nil && res != nil {
			t.Fatal("Result returned with an error")
		}
		// go-jose did the JWS work, so an accepted proof is one it verifies; what is left to hold is that an
		// acceptance is complete and is for the audience asked.
		if err == nil && (res.WIT == nil || res.JTI == "" || res.Audience != testAud || res.WIT.Raw != wit) {
			t.Fatalf("accepted without a complete Result: %+v", res)
		}
	})
}

func FuzzExtractHeaders(f *testing.F) {
	f.Add("a.b.c", "d.e.f", false)
	f.Add(" a.b.c ", "", true)
	f.Add("a.b.c,d.e.f", "x", false)
	f.Fuzz(func(t *testing.T, wit, wpt string, twice bool) {
		h := http.Header{wire.HeaderWIT: {wit}, wire.HeaderWPT: {wpt}}
		if twice {
			h[wire.HeaderWPT] = append(h[wire.HeaderWPT], wpt)
		}
		w, p, err := ExtractHeaders(h)
		typed(t, err)
		if err == nil && (len(w) > MaxTokenSize || len(p) > MaxTokenSize || twice) {
			t.Fatalf("accepted %d/%d bytes, twice=%v", len(w), len(p), twice)
		}
		if err != nil && !errors.Is(err, autherr.ErrMissing) && !errors.Is(err, autherr.ErrMalformed) && !errors.Is(err, autherr.ErrTooLarge) {
			t.Fatalf("unexpected reason: %v", err)
		}
	})
}
