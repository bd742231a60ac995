package httpsig

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// typed reports whether err is nil or wraps exactly the reasons a parser of untrusted input may return.
func typed(err error, allowed ...error) bool {
	if err == nil {
		return true
	}
	for _, a := range allowed {
		if errors.Is(err, a) && autherr.Of(err) == a {
			return true
		}
	}
	return false
}

func FuzzParseSignatureInput(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.SignatureInput)
	}
	f.Add(exReqInput)
	f.Add(exRespIn)
	f.Add(`a=("x";key="y";req "@query-param";name="p");p=1.5;q=?0;r=:AA==:;s=tok`)
	for _, s := range []string{`a`, `a;x=1`, `a=1`, `a=("x" 1)`, `a=(1 "x")`, `a=("@signature-params")`, `a=("X")`,
		`a=("x");created="1"`, `a=("x");nonce=1;created=?1`, `a=("x"), a=("y")`, `a=(1), a=(`, `a=("x";p=:AA==:;p=2)`,
		`a=("x"` + strings.Repeat(` "x"`, 70) + `)`, `a=(1` + strings.Repeat(` "x"`, 70) + `)`, `a=()`, `a=();k`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ins, err := ParseSignatureInput([]string{s})
		if !typed(err, autherr.ErrMalformed, autherr.ErrTooLarge) {
			t.Fatalf("untyped error %v", err)
		}
		// The one-pass parser must answer as the generic Dictionary parser plus the member checks did.
		if len(s) <= MaxFieldBytes {
			ref, refErr := referenceParseSignatureInput(s)
			if fmt.Sprint(err) != fmt.Sprint(refErr) || !reflect.DeepEqual(ins, ref) {
				t.Fatalf("parse of %q:\n got %#v, %v\nwant %#v, %v", s, ins, err, ref, refErr)
			}
		}
		for i := range ins {
			// What we parsed must serialize and parse back to the same thing.
			again, err := ParseSignatureInput([]string{ins[i].Label + "=" + ins[i].String()})
			if err != nil || len(again) != 1 || again[0].String() != ins[i].String() {
				t.Fatalf("round trip of %q: %v", ins[i].String(), err)
			}
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.Signature)
	}
	f.Add(`a=:AA==:, b=:AAEC:;p`)
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := ParseSignature([]string{s}); !typed(err, autherr.ErrMalformed, autherr.ErrTooLarge) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

func FuzzParseContentDigest(f *testing.F) {
	f.Add(`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`, []byte(`{"hello": "world"}`))
	f.Add(`sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:, md5=:AA==:`, []byte("x"))
	f.Fuzz(func(t *testing.T, s string, body []byte) {
		err := VerifyContentDigest([]string{s}, body)
		if !typed(err, autherr.ErrMalformed, autherr.ErrTooLarge, autherr.ErrUnsupportedAlg, autherr.ErrMismatch) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzContentDigestFastPath holds VerifyContentDigest's fast path to the full parse: it may only accept what the
// full parse accepts.
func FuzzContentDigestFastPath(f *testing.F) {
	body := []byte(`{"hello": "world"}`)
	good, err := ContentDigest(body)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, body)
	f.Add(good, []byte(`{"hello": "world!"}`))
	f.Add(" "+good, body)
	f.Add(strings.TrimSuffix(good, "=:")+":", body)
	f.Add(`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`, body)
	f.Fuzz(func(t *testing.T, s string, body []byte) {
		if isSHA256DigestOf([]string{s}, body) {
			if err := verifyContentDigest([]string{s}, body); err != nil {
				t.Fatalf("fast path accepted %q for a %d-byte body, the full parse refuses: %v", s, len(body), err)
			}
		}
	})
}

func FuzzSignatureBase(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.SignatureInput, true)
		f.Add(v.SignatureInput, false)
	}
	f.Fuzz(func(t *testing.T, s string, response bool) {
		ins, err := ParseSignatureInput([]string{s})
		if err != nil {
			return
		}
		req := readRequest(t, testRequest)
		m := Message{Request: req}
		if response {
			m.Response = readResponse(t, reqresResponse, req)
		}
		for i := range ins {
			if _, err := SignatureBase(m, &ins[i]); !typed(err, autherr.ErrMalformed, autherr.ErrTooLarge) {
				t.Fatalf("untyped error %v", err)
			}
		}
	})
}

// FuzzVerifyRequest feeds arbitrary profile headers, seeded from a valid signed request, to a real Verifier.
func FuzzVerifyRequest(f *testing.F) {
	e := newEnv(f)
	s, _, _ := e.workload(f, "EdDSA", SignerOptions{})
	v := e.verifier(f, nil)
	body := []byte(`{"a":1}`)
	r := newRequest(f, http.MethodPost, envAud+"?x=1", string(body), map[string]string{"Content-Type": "application/json"})
	if err := s.SignRequest(r, body); err != nil {
		f.Fatal(err)
	}
	f.Add(r.Header.Get(wire.HeaderWIT), r.Header.Get(wire.HeaderSignatureInput), r.Header.Get(wire.HeaderSignature),
		r.Header.Get(HeaderContentDigest), "/api/items?x=1", body)
	f.Add("", exReqInput, exReqSig, "", "/", []byte(nil))
	f.Fuzz(func(t *testing.T, wit, input, sig, digest, target string, body []byte) {
		req, err := http.NewRequest(http.MethodPost, "https://tool.example.org"+target, nil)
		if err != nil {
			return
		}
		for k, val := range map[string]string{wire.HeaderWIT: wit, wire.HeaderSignatureInput: input, wire.HeaderSignature: sig,
			HeaderContentDigest: digest, "Content-Type": "application/json"} {
			if val != "" {
				req.Header[k] = []string{val}
			}
		}
		_, err = v.VerifyRequest(context.Background(), req, body)
		if err != nil && autherr.Of(err) == nil {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// FuzzFieldLines holds fieldLines, which canonicalizes a component name on the stack, to Header.Values for any
// name, with a decoy stored under the name as given.
func FuzzFieldLines(f *testing.F) {
	for _, n := range []string{"content-type", "workload-identity-token", "x-1-a", "-a", "a--b", "Content-TYPE", "a b", "ü", "a_b", ""} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{}
		h.Add(name, "canonical")
		if _, ok := h[name]; !ok {
			h[name] = []string{"decoy"}
		}
		if got, want := fieldLines(h, name), h.Values(name); !slices.Equal(got, want) {
			t.Fatalf("fieldLines(%q) = %q, Header.Values = %q", name, got, want)
		}
	})
}
