package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

// TestExchangerForeignServer: answers of a token endpoint that is not ours (legacy APIs' own authorization
// servers) are read strictly: no token is injected from a malformed, mistyped or refused answer.
func TestExchangerForeignServer(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	jwtAT := signJWT(t, mustP256(t), "ES256", "k", "at+jwt", map[string]any{"exp": now.Add(10 * time.Minute).Unix()})
	cases := []struct {
		name   string
		status int
		body   string
		want   error
		code   string
		expiry time.Time
	}{
		{name: "no expires_in: exp from the JWT", status: 200,
			body:   `{"access_token":"` + jwtAT + `","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"Bearer"}`,
			expiry: now.Add(10 * time.Minute).Truncate(time.Second)},
		{name: "opaque token without expires_in", status: 200,
			body: `{"access_token":"opaque","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"bearer"}`},
		{name: "DPoP-bound token cannot be injected", status: 200,
			body: `{"access_token":"x","issued_token_type":"` + TokenTypeAccessToken + `","token_type":"DPoP","expires_in":60}`, want: autherr.ErrUpstream},
		{name: "another token type issued", status: 200,
			body: `{"access_token":"x","issued_token_type":"` + TokenTypeJWT + `","token_type":"Bearer","expires_in":60}`, want: autherr.ErrUpstream},
		{name: "no access_token", status: 200, body: `{"issued_token_type":"` + TokenTypeAccessToken + `"}`, want: autherr.ErrUpstream},
		{name: "not JSON", status: 200, body: `<html>`, want: autherr.ErrUpstream},
		{name: "gateway error page", status: 502, body: `<html>bad gateway</html>`, want: autherr.ErrUpstream, code: CodeServerError},
		{name: "gateway timeout", status: 504, body: ``, want: autherr.ErrUpstreamTimeout, code: CodeServerError},
		{name: "invalid_grant without our reason", status: 400, body: `{"error":"invalid_grant","error_description":"user gone"}`,
			want: autherr.ErrRevoked, code: CodeInvalidGrant},
		{name: "invalid_target", status: 400, body: `{"error":"invalid_target"}`, want: autherr.ErrDenied, code: CodeInvalidTarget},
		{name: "unknown reason falls back to the code", status: 401, body: `{"error":"invalid_client","reason":"nonsense"}`,
			want: autherr.ErrDenied, code: CodeInvalidClient},
		{name: "unknown error code", status: 400, body: `{"error":"slow_down"}`, want: autherr.ErrUpstream, code: "slow_down"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			x := e.exchanger(func(cfg *ExchangerConfig) { cfg.TokenEndpoint, cfg.HTTPClient = srv.URL+"/token", srv.Client() })
			tok, err := x.Exchange(context.Background(), TokenRequest{RequestedTokenType: TokenTypeAccessToken, Audience: "legacy"})
			autherrtest.Check(t, err, c.want)
			if c.code != "" {
				var oe *Error
				if !errors.As(err, &oe) || oe.Code != c.code || oe.Status != c.status {
					t.Fatalf("err %#v", err)
				}
			}
			if c.want == nil && !tok.Expiry.Equal(c.expiry) {
				t.Errorf("expiry %v, want %v", tok.Expiry, c.expiry)
			}
		})
	}
}

// TestUserTokenScpClaim: a user token's scope may be a scope string or an scp array or string; each bounds the
// granted scope.
func TestUserTokenScpClaim(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	for name, c := range map[string]struct {
		scp    any
		status int
	}{
		"scp array":       {[]any{"orders.create"}, 200},
		"scp string":      {"orders.create orders.read", 200},
		"scp lacks scope": {[]any{"orders.read"}, 400},
		"scp number":      {7, 400},
	} {
		t.Run(name, func(t *testing.T) {
			user := e.idp.token(t, now, func(m map[string]any) { delete(m, "scope"); m["scp"] = c.scp })
			if st, body := e.post(nil, e.txnForm(user), e.wptHeader(e.endpoint)); st != c.status {
				t.Fatalf("%d %v", st, body)
			}
		})
	}
}

// TestTxnCacheBound: the verifier's cache holds at most CacheSize tokens.
func TestTxnCacheBound(t *testing.T) {
	e := newEnv(t)
	v := e.verifier(func(c *TxnVerifierConfig) { c.CacheSize = 2 })
	for _, txn := range []string{"a", "b", "c", "d"} {
		tok := e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["txn"] = txn })
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	v.cache.mu.Lock()
	n := len(v.cache.m)
	v.cache.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d cached, bound 2", n)
	}
}
