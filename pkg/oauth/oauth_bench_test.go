package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
)

// BenchmarkTxnVerify is the ingress hot path: a Txn-Token seen before (egress reuses one until shortly before
// it expires) is a cache hit; "uncached" is a full ES256 verification and claim check.
func BenchmarkTxnVerify(b *testing.B) {
	e := newEnv(b)
	tok := e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) {
		m["tctx"] = map[string]any{"tool": "create_order", "max_amount": "100"}
		m["act"] = map[string]any{"sub": agentID.String()}
	})
	for _, c := range []struct {
		name string
		size int
	}{{"cached", 0}, {"uncached", -1}} {
		b.Run(c.name, func(b *testing.B) {
			v := e.verifier(func(cfg *TxnVerifierConfig) { cfg.CacheSize = c.size })
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.VerifyFrom(ctx, tok, agentID.String()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTokenEndpoint is one token exchange served in-process: WIT + WPT verification, user-token
// verification and signing (the WPT minting is outside the timer's concern but inside the loop).
func BenchmarkTokenEndpoint(b *testing.B) {
	e := newEnv(b)
	user := e.idp.token(b, e.clock.Now(), nil)
	b.ReportAllocs()
	for b.Loop() {
		body := e.txnForm(user).Encode()
		r := httptest.NewRequest(http.MethodPost, e.endpoint, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set(wire.HeaderWPT, e.wpt(e.agentWIT, e.endpoint))
		w := httptest.NewRecorder()
		e.svc.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkExchangerCacheHit is the egress cost of a Txn-Token already in the cache.
func BenchmarkExchangerCacheHit(b *testing.B) {
	e := newEnv(b)
	x := e.exchanger(nil)
	req := TokenRequest{Scope: "orders.read"}
	if _, err := x.Exchange(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := x.Exchange(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
