package wpt

import (
	"context"
	"errors"
	"net/http"
	"reflect"
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

// FuzzProofClaims holds the flat claims decoder to the strict JSON decoder: wherever decodeFlat decides, the strict
// decoder must accept the same bytes with the same claims.
func FuzzProofClaims(f *testing.F) {
	for _, s := range []string{
		`{"aud":"https://tool.example.org/mcp","exp":1800000060,"jti":"j","wth":"w","ath":"a","tth":"t","iat":1,"nbf":-2}`,
		" {\t\"aud\" :\r\n\"a\" } ",
		`{"aud":"a","exp":0}`, `{"aud":"a","exp":-0}`, `{"aud":"a","exp":01}`, `{"aud":"a","exp":1e3}`, `{"aud":"a","exp":1.5}`,
		`{"aud":"a","exp":999999999999999}`, `{"aud":"a","exp":9999999999999999}`, `{"aud":"a","exp":-}`,
		`{"aud":"a","aud":"b"}`, `{"aud":"a","AUD":"b"}`, `{"aud":"a\u0062"}`, `{"a\u0075d":"a"}`, `{"aud":"é"}`,
		`{"aud":["a"]}`, `{"aud":"a","ath":null}`, `{"aud":"a","oth":{"x":"y"}}`, `{"aud":"a","x":1}`, `{"aud":"a"}x`,
		`{"aud":"a",}`, `{}`, `[]`, `{"aud":"a"`, `{"aud":"a" "exp":1}`, "{\"aud\":\"a\x7f\"}", `{"jti":"j"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		var flat, strict proofClaims
		errStrict := strict.decodeJSON(payload)
		if !flat.decodeFlat(payload) {
			return
		}
		if errStrict != nil {
			t.Fatalf("flat decoder accepted what the strict one refuses (%v): %q", errStrict, payload)
		}
		if !reflect.DeepEqual(flat, strict) {
			t.Fatalf("claims differ for %q:\nflat   %+v\nstrict %+v", payload, flat, strict)
		}
	})
}
