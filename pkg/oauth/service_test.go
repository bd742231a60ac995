package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TestExchangeWithUserToken: the egress path end to end — the agent's request carries the user's token, the
// Exchanger trades it (WIT actor proved by a WPT) for a Txn-Token, removes the raw token, and ingress verifies
// what arrives.
func TestExchangeWithUserToken(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	user := e.idp.token(t, e.clock.Now(), nil)
	r, _ := http.NewRequest(http.MethodPost, "http://tool.example.org/mcp", nil)
	r.Header.Set("Authorization", "Bearer "+user)
	if err := x.Apply(context.Background(), r, "orders.create"); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") != "" {
		t.Error("the user's raw token still goes to the tool")
	}
	txn := r.Header.Get(wire.HeaderTxnToken)
	info, err := e.verifier(nil).VerifyFrom(context.Background(), txn, agentID.String())
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != "alice" || info.RequestingWorkload != agentID.String() || info.Actor != agentID.String() ||
		info.Audience != testTD.Name() || info.Issuer != e.endpoint || strings.Join(info.Scope, " ") != "orders.create" {
		t.Errorf("info = %+v", info)
	}
	if len(info.TransactionID) != 36 || info.TransactionID[14] != '4' {
		t.Errorf("txn %q is not a v4 UUID", info.TransactionID)
	}
	if got := info.Expiry.Sub(info.IssuedAt); got != DefaultTxnTokenLifetime {
		t.Errorf("lifetime %v", got)
	}
	if info.RequestContext["req_wl_authn"] != string(wire.AuthWITWPT) || info.RequestContext["subject_iss"] != userIss {
		t.Errorf("rctx = %v", info.RequestContext)
	}
	if _, typ := claimsOf(t, txn); typ != TypTxnToken {
		t.Errorf("typ %q", typ)
	}
	if cs := info.ClaimStrings(); cs["sub"] != "alice" || cs["act"] != `{"sub":"`+agentID.String()+`"}` {
		t.Errorf("ClaimStrings = %v", cs)
	}
	assertNoTokensLogged(t, e, user, txn, e.agentWIT.Token)
}

// TestExchangeSelf: without a user token the agent acts for itself: sub = req_wl = agent, no act.
func TestExchangeSelf(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	r, _ := http.NewRequest(http.MethodGet, "http://tool.example.org/", nil)
	r.Header.Set("Authorization", "Basic dXNlcjpwdw==") // not a user token: left alone
	if err := x.Apply(context.Background(), r, "orders.read"); err != nil {
		t.Fatal(err)
	}
	if r.Header.Get("Authorization") == "" {
		t.Error("a Basic Authorization header was removed")
	}
	info, err := e.verifier(nil).VerifyFrom(context.Background(), r.Header.Get(wire.HeaderTxnToken), agentID.String())
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != agentID.String() || info.Actor != "" || info.Claims["act"] != nil {
		t.Errorf("info = %+v", info)
	}
}

// TestUserTokenHeaderOptions: a custom header, and keeping the raw token when configured.
func TestUserTokenHeaderOptions(t *testing.T) {
	e := newEnv(t)
	user := e.idp.token(t, e.clock.Now(), nil)
	for _, keep := range []bool{false, true} {
		x := e.exchanger(func(c *ExchangerConfig) {
			c.UserTokenHeader, c.UserTokenType, c.KeepUserToken = "X-User-Token", TokenTypeJWT, keep
		})
		r, _ := http.NewRequest(http.MethodGet, "http://tool.example.org/", nil)
		r.Header.Set("X-User-Token", user)
		if err := x.Apply(context.Background(), r, "orders.read"); err != nil {
			t.Fatal(err)
		}
		if got := r.Header.Get("X-User-Token") != ""; got != keep {
			t.Errorf("keep=%v: user token present = %v", keep, got)
		}
		info, err := e.verifier(nil).Verify(context.Background(), r.Header.Get(wire.HeaderTxnToken))
		if err != nil || info.Subject != "alice" {
			t.Fatalf("info %+v, err %v", info, err)
		}
	}
}

// TestTokenEndpointRefusals: bad input gets the right RFC 6749 error and our reason, never a token.
func TestTokenEndpointRefusals(t *testing.T) {
	e := newEnv(t)
	other := testca.New(t, testTD) // same trust domain name, keys nobody trusts
	now := e.clock.Now()
	good := e.idp.token(t, now, nil)
	stranger := newIDP(t, "https://evil.example.net")
	badSig := newIDP(t, userIss) // same iss and kid, other key
	// An RFC 9068 access token is typed at+jwt so that it is not taken for an ID token.
	accessToken := signJWT(t, e.idp.key, "ES256", e.idp.kid, TypAccessToken, map[string]any{
		"iss": userIss, "sub": "alice", "aud": userAud, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"scope": "orders.create"})

	type tc struct {
		name   string
		form   func(url.Values)
		hdr    func() http.Header
		client *http.Client
		setup  func()
		status int
		code   string
		reason string
	}
	wptOK := func() http.Header { return e.wptHeader(e.endpoint) }
	cases := []tc{
		{name: "no proof of possession for the WIT", hdr: func() http.Header { return nil },
			status: 401, code: CodeInvalidClient, reason: "credential_missing"},
		{name: "no client authentication at all", form: func(f url.Values) {
			f.Del("actor_token")
			f.Del("actor_token_type")
			f.Del("subject_token")
			f.Del("subject_token_type")
		}, hdr: func() http.Header { return nil }, status: 401, code: CodeInvalidClient, reason: "credential_missing"},
		{name: "WPT with the wrong aud", hdr: func() http.Header { return e.wptHeader("https://elsewhere.example.org/token") },
			status: 401, code: CodeInvalidClient, reason: "wrong_audience"},
		{name: "WPT for another WIT", hdr: func() http.Header {
			return http.Header{wire.HeaderWPT: {e.wpt(e.ca.CreateWITSVID(agentID), e.endpoint)}}
		}, status: 401, code: CodeInvalidClient},
		{name: "WIT from untrusted keys", form: func(f url.Values) {
			w := other.CreateWITSVID(agentID)
			f.Set("actor_token", w.Token)
		}, status: 401, code: CodeInvalidClient},
		{name: "actor WIT differs from the header WIT", hdr: func() http.Header {
			h := wptOK()
			h.Set(wire.HeaderWIT, e.ca.CreateWITSVID(agentID).Token)
			return h
		}, status: 400, code: CodeInvalidRequest, reason: "binding_mismatch"},
		{name: "unknown actor token type", form: func(f url.Values) { f.Set("actor_token_type", TokenTypeIDToken) },
			status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "at+jwt access token declared as an ID token", form: func(f url.Values) {
			f.Set("subject_token", accessToken)
			f.Set("subject_token_type", TokenTypeIDToken)
		}, status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "expired user token", form: func(f url.Values) {
			f.Set("subject_token", e.idp.token(t, now, func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() }))
			f.Set("subject_token_type", TokenTypeAccessToken)
		}, status: 400, code: CodeInvalidRequest, reason: "expired"},
		{name: "untrusted user-token issuer", form: func(f url.Values) {
			f.Set("subject_token", stranger.token(t, now, nil))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "untrusted_issuer"},
		{name: "user token with a bad signature", form: func(f url.Values) {
			f.Set("subject_token", badSig.token(t, now, nil))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "bad_signature"},
		{name: "user token for another audience", form: func(f url.Values) {
			f.Set("subject_token", e.idp.token(t, now, func(m map[string]any) { m["aud"] = "some-api" }))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "wrong_audience"},
		{name: "user token of a workload type", form: func(f url.Values) {
			f.Set("subject_token", signJWT(t, e.idp.key, "ES256", e.idp.kid, "wit+jwt", map[string]any{
				"iss": userIss, "sub": "alice", "aud": userAud, "exp": now.Add(time.Hour).Unix()}))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "user sub posing as a workload", form: func(f url.Values) {
			f.Set("subject_token", e.idp.token(t, now, func(m map[string]any) { m["sub"] = toolID.String() }))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "may_act names another agent", form: func(f url.Values) {
			f.Set("subject_token", e.idp.token(t, now, func(m map[string]any) { m["may_act"] = map[string]any{"sub": toolID.String()} }))
			f.Set("subject_token_type", TokenTypeJWT)
		}, status: 400, code: CodeInvalidRequest, reason: "policy_denied"},
		{name: "scope beyond the user's", form: func(f url.Values) {
			f.Set("subject_token", good)
			f.Set("subject_token_type", TokenTypeAccessToken)
			f.Set("scope", "orders.delete")
		}, status: 400, code: CodeInvalidScope, reason: "policy_denied"},
		{name: "someone else's WIT as subject", form: func(f url.Values) {
			f.Set("subject_token", e.ca.CreateWITSVID(toolID).Token)
		}, status: 400, code: CodeInvalidRequest, reason: "binding_mismatch"},
		{name: "unsupported grant type", form: func(f url.Values) { f.Set("grant_type", "client_credentials") },
			status: 400, code: CodeUnsupportedGrantType, reason: "malformed"},
		{name: "missing grant type", form: func(f url.Values) { f.Del("grant_type") },
			status: 400, code: CodeInvalidRequest, reason: "credential_missing"},
		{name: "repeated scope", form: func(f url.Values) { f["scope"] = []string{"a", "b"} },
			status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "Txn-Token for another trust domain", form: func(f url.Values) { f.Set("audience", "other.example") },
			status: 400, code: CodeInvalidTarget, reason: "wrong_audience"},
		{name: "Txn-Token without scope", form: func(f url.Values) { f.Del("scope") },
			status: 400, code: CodeInvalidRequest, reason: "credential_missing"},
		{name: "refresh token as subject", form: func(f url.Values) { f.Set("subject_token_type", TokenTypeRefresh) },
			status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "unknown requested type", form: func(f url.Values) { f.Set("requested_token_type", TokenTypeIDToken) },
			status: 400, code: CodeInvalidRequest, reason: "malformed"},
		{name: "access token without target", form: func(f url.Values) {
			f.Set("requested_token_type", TokenTypeAccessToken)
			f.Del("audience")
		}, status: 400, code: CodeInvalidRequest, reason: "credential_missing"},
		{name: "resource with a fragment", form: func(f url.Values) {
			f.Set("requested_token_type", TokenTypeAccessToken)
			f.Set("resource", "https://api.example.org/#x")
		}, status: 400, code: CodeInvalidTarget, reason: "malformed"},
		{name: "revoked user", form: func(f url.Values) {
			f.Set("subject_token", good)
			f.Set("subject_token_type", TokenTypeAccessToken)
		}, setup: func() { e.revoked["user|alice"] = true }, status: 400, code: CodeInvalidGrant, reason: "revoked"},
		{name: "revoked agent", setup: func() { e.revoked["agent|"+agentID.String()] = true },
			status: 400, code: CodeInvalidGrant, reason: "revoked"},
		{name: "policy denies", setup: func() {
			e.policy = PolicyFunc(func(context.Context, *ExchangeRequest) ([]string, error) {
				return nil, fmt.Errorf("agents may not: %w", autherr.ErrDenied)
			})
		}, status: 400, code: CodeInvalidTarget, reason: "policy_denied"},
		{name: "policy fails", setup: func() {
			e.policy = PolicyFunc(func(context.Context, *ExchangeRequest) ([]string, error) { return nil, errors.New("db down") })
		}, status: 500, code: CodeServerError, reason: "policy_denied"},
		{name: "policy grants what was not asked", setup: func() {
			e.policy = PolicyFunc(func(context.Context, *ExchangeRequest) ([]string, error) { return []string{"admin"}, nil })
		}, status: 500, code: CodeServerError},
		{name: "JWT-SVID actor without mTLS", form: func(f url.Values) {
			f.Set("actor_token", e.ca.CreateJWTSVID(agentID, []string{e.endpoint}))
			f.Set("actor_token_type", TokenTypeJWT)
			f.Del("subject_token")
			f.Del("subject_token_type")
		}, status: 401, code: CodeInvalidClient, reason: "credential_missing"},
		{name: "mTLS peer is not the WIT subject", client: e.client(e.ca.CreateX509SVID(toolID)),
			status: 401, code: CodeInvalidClient, reason: "binding_mismatch"},
		{name: "client certificate from an untrusted CA", client: e.client(other.CreateX509SVID(agentID)),
			status: 401, code: CodeInvalidClient, reason: "untrusted_issuer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.revoked, e.policy = map[string]bool{}, nil
			if c.setup != nil {
				c.setup()
			}
			f := e.txnForm("")
			if c.form != nil {
				c.form(f)
			}
			h := wptOK
			if c.hdr != nil {
				h = c.hdr
			}
			status, body := e.post(c.client, f, h())
			if status != c.status || body["error"] != c.code {
				t.Fatalf("got %d %v, want %d %s", status, body, c.status, c.code)
			}
			if c.reason != "" && body["reason"] != c.reason {
				t.Errorf("reason = %v, want %s (%v)", body["reason"], c.reason, body["error_description"])
			}
			if body["access_token"] != nil {
				t.Error("a refusal carries a token")
			}
			if d, _ := body["error_description"].(string); d == "" {
				t.Error("no error_description")
			}
		})
	}
}

// TestTokenEndpointHTTP: method, content type and body size.
func TestTokenEndpointHTTP(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	resp, err := c.Get(e.endpoint)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, err = c.Post(e.endpoint, "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("JSON body: %d", resp.StatusCode)
	}
	resp, err = c.Post(e.endpoint, "application/x-www-form-urlencoded", strings.NewReader("scope="+strings.Repeat("a", MaxRequestSize)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("oversized body: %d", resp.StatusCode)
	}
}

// TestWPTReplayRefused: a WPT is single-use at the token endpoint too.
func TestWPTReplayRefused(t *testing.T) {
	e := newEnv(t)
	h := e.wptHeader(e.endpoint)
	if st, body := e.post(nil, e.txnForm(""), h); st != 200 {
		t.Fatalf("first: %d %v", st, body)
	}
	if st, body := e.post(nil, e.txnForm(""), h); st != 401 || body["reason"] != "replay" {
		t.Fatalf("replayed: %d %v", st, body)
	}
}

// TestMTLSClientAuthentication: WIT with mTLS instead of a WPT, the X.509-SVID alone, and a JWT-SVID over mTLS.
func TestMTLSClientAuthentication(t *testing.T) {
	e := newEnv(t)
	mtls := e.client(e.agentSVID)
	cases := []struct {
		name   string
		form   func(url.Values)
		method wire.AuthMethod
	}{
		{"WIT over mTLS", nil, wire.AuthWITMTLS},
		{"X.509-SVID alone", func(f url.Values) {
			for _, k := range []string{"actor_token", "actor_token_type", "subject_token", "subject_token_type"} {
				f.Del(k)
			}
		}, wire.AuthMTLS},
		{"JWT-SVID over mTLS", func(f url.Values) {
			svid := e.ca.CreateJWTSVID(agentID, []string{e.endpoint})
			f.Set("actor_token", svid)
			f.Set("actor_token_type", TokenTypeJWT)
			f.Set("subject_token", svid)
			f.Set("subject_token_type", TokenTypeJWT)
		}, wire.AuthJWTSVIDMTLS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := e.txnForm("")
			if c.form != nil {
				c.form(f)
			}
			st, body := e.post(mtls, f, nil)
			if st != 200 {
				t.Fatalf("%d %v", st, body)
			}
			info, err := e.verifier(nil).VerifyFrom(context.Background(), body["access_token"].(string), agentID.String())
			if err != nil {
				t.Fatal(err)
			}
			if info.RequestContext["req_wl_authn"] != string(c.method) || info.Subject != agentID.String() {
				t.Errorf("info %+v", info)
			}
		})
	}
	// A JWT-SVID for another audience is refused even over mTLS.
	f := e.txnForm("")
	f.Set("actor_token", e.ca.CreateJWTSVID(agentID, []string{"https://other.example.org"}))
	f.Set("actor_token_type", TokenTypeJWT)
	f.Del("subject_token")
	f.Del("subject_token_type")
	if st, body := e.post(mtls, f, nil); st != 401 || body["reason"] != "wrong_audience" {
		t.Errorf("JWT-SVID for another aud: %d %v", st, body)
	}
}

// TestExchangerJWTSVIDActor: the Exchanger with a JWT-SVID actor over an mTLS client.
func TestExchangerJWTSVIDActor(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(func(c *ExchangerConfig) {
		c.Source = nil
		c.HTTPClient = e.client(e.agentSVID)
		c.JWTSVID = func(_ context.Context, aud string) (string, error) {
			return e.ca.CreateJWTSVID(agentID, []string{aud}), nil
		}
	})
	tok, err := x.Exchange(context.Background(), TokenRequest{Scope: "orders.read"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.verifier(nil).VerifyFrom(context.Background(), tok.Value, agentID.String()); err != nil {
		t.Fatal(err)
	}
}

// TestExchangerRefusalIsTyped: a refusal reaches the egress caller as an *Error wrapping the server's reason.
func TestExchangerRefusalIsTyped(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	now := e.clock.Now()
	expired := e.idp.token(t, now, func(m map[string]any) { m["exp"] = now.Add(-time.Hour).Unix() })
	_, err := x.Exchange(context.Background(), TokenRequest{SubjectToken: expired, SubjectTokenType: TokenTypeJWT, Scope: "orders.read"})
	autherrtest.Check(t, err, autherr.ErrExpired)
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != CodeInvalidRequest || oe.Status != 400 {
		t.Fatalf("err = %#v", err)
	}
	if strings.Contains(err.Error(), expired) {
		t.Error("the error message contains the token")
	}
	// A failed exchange is not cached.
	if _, err := x.Exchange(context.Background(), TokenRequest{SubjectToken: expired, SubjectTokenType: TokenTypeJWT, Scope: "orders.read"}); err == nil {
		t.Fatal("second try succeeded")
	}
	if s := x.Stats(); s.Exchanges != 2 || s.CacheHits != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestExchangerUpstreamDown: an unreachable token service is autherr.ErrUpstream, not a pass.
func TestExchangerUpstreamDown(t *testing.T) {
	e := newEnv(t)
	x := e.exchanger(nil)
	e.srv.Close()
	r, _ := http.NewRequest(http.MethodGet, "http://tool.example.org/", nil)
	err := x.Apply(context.Background(), r, "orders.read")
	autherrtest.Check(t, err, autherr.ErrUpstream)
	if r.Header.Get(wire.HeaderTxnToken) != "" {
		t.Error("Txn-Token set after a failure")
	}
}

// TestReplacementTxnToken: a tool that forwards the agent's Txn-Token downstream gets a replacement naming itself
// (same txn and sub, act chain kept, no wider scope, no longer life), which the next hop accepts from it.
func TestReplacementTxnToken(t *testing.T) {
	e := newEnv(t)
	userIssued := e.clock.Now().Add(-time.Minute).Truncate(time.Second) // the test IdP's iat
	agentTok, err := e.exchanger(nil).Exchange(context.Background(), TokenRequest{
		SubjectToken: e.idp.token(t, e.clock.Now(), nil), SubjectTokenType: TokenTypeAccessToken, Scope: "orders.read orders.create"})
	if err != nil {
		t.Fatal(err)
	}
	orig, err := e.verifier(nil).Verify(context.Background(), agentTok.Value)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	tool := e.exchanger(func(c *ExchangerConfig) { c.Source = witSource{e.ca.CreateWITSVID(toolID)} })
	r, _ := http.NewRequest(http.MethodGet, "http://next.example.org/", nil)
	r.Header.Set(wire.HeaderTxnToken, agentTok.Value)
	if err := tool.Apply(context.Background(), r, "orders.read"); err != nil {
		t.Fatal(err)
	}
	v := e.verifier(nil)
	if _, err := v.VerifyFrom(context.Background(), agentTok.Value, toolID.String()); !errors.Is(err, autherr.ErrMismatch) {
		t.Fatalf("the agent's token from the tool: %v", err)
	}
	repl, err := v.VerifyFrom(context.Background(), r.Header.Get(wire.HeaderTxnToken), toolID.String())
	if err != nil {
		t.Fatal(err)
	}
	if repl.TransactionID != orig.TransactionID || repl.Subject != "alice" || !repl.Expiry.Equal(orig.Expiry) {
		t.Errorf("replacement %+v, original %+v", repl, orig)
	}
	// The user's revocations are judged by when her own token was issued, through every replacement: not by
	// when a Txn-Token was minted, which may be after a revocation the SET of which had not arrived yet.
	if !orig.SubjectIssuedAt().Equal(userIssued) || !repl.SubjectIssuedAt().Equal(userIssued) || !e.checkedAt[RevokedUser].Equal(userIssued) {
		t.Errorf("subject issued at: original %v, replacement %v, checked with %v; the user token was issued at %v",
			orig.SubjectIssuedAt(), repl.SubjectIssuedAt(), e.checkedAt[RevokedUser], userIssued)
	}
	act, _ := repl.Claims["act"].(map[string]any)
	inner, _ := act["act"].(map[string]any)
	if act["sub"] != toolID.String() || inner["sub"] != agentID.String() {
		t.Errorf("act chain %v", repl.Claims["act"])
	}
	// Widening the scope of a transaction is refused.
	_, err = tool.Exchange(context.Background(), TokenRequest{SubjectToken: agentTok.Value, SubjectTokenType: TokenTypeTxnToken, Scope: "orders.delete"})
	var oe *Error
	if !errors.As(err, &oe) || oe.Code != CodeInvalidScope {
		t.Fatalf("widened scope: %v", err)
	}
	// An expired Txn-Token is not replaced.
	e.clock.Add(10 * time.Minute)
	_, err = tool.Exchange(context.Background(), TokenRequest{SubjectToken: agentTok.Value, SubjectTokenType: TokenTypeTxnToken, Scope: "orders.read"})
	autherrtest.Check(t, err, autherr.ErrExpired)
}

// TestTxnTokenNeverOutlivesUserToken: exp is capped at the user token's exp.
func TestTxnTokenNeverOutlivesUserToken(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	user := e.idp.token(t, now, func(m map[string]any) { m["exp"] = now.Add(90 * time.Second).Unix() })
	st, body := e.post(nil, e.txnForm(user), e.wptHeader(e.endpoint))
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	c, _ := claimsOf(t, body["access_token"].(string))
	if int64(c["exp"].(float64)) != now.Add(90*time.Second).Unix() {
		t.Errorf("exp %v, user exp %d", c["exp"], now.Add(90*time.Second).Unix())
	}
	if body["token_type"] != "N_A" || body["issued_token_type"] != TokenTypeTxnToken || body["refresh_token"] != nil {
		t.Errorf("response %v", body)
	}
}

// TestJWKSHandler: the published keys verify issued tokens through a RemoteJWKS.
func TestJWKSHandler(t *testing.T) {
	e := newEnv(t)
	jwksURL := strings.TrimSuffix(e.endpoint, "/token") + "/jwks"
	remote, err := NewRemoteJWKS(RemoteJWKSConfig{URL: jwksURL, Client: e.client(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.exchanger(nil).Exchange(context.Background(), TokenRequest{Scope: "orders.read"})
	if err != nil {
		t.Fatal(err)
	}
	v := e.verifier(func(c *TxnVerifierConfig) { c.Keys = remote })
	if _, err := v.Verify(context.Background(), tok.Value); err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	resp, err := e.client(nil).Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if len(e.svc.JWKS().Keys) != 1 || !e.svc.JWKS().Keys[0].IsPublic() {
		t.Errorf("JWKS %+v", set)
	}
}

func TestNewTokenServiceConfigErrors(t *testing.T) {
	key := mustP256(t)
	good := TokenServiceConfig{TrustDomain: testTD, Endpoint: "https://tts.example.org/token", SigningKey: key, KeyID: "k", Alg: "ES256"}
	if _, err := NewTokenService(good); err != nil {
		t.Fatal(err)
	}
	ks := newIDP(t, userIss).keys
	for name, mod := range map[string]func(*TokenServiceConfig){
		"no trust domain":      func(c *TokenServiceConfig) { c.TrustDomain = spiffeid.TrustDomain{} },
		"relative endpoint":    func(c *TokenServiceConfig) { c.Endpoint = "/token" },
		"endpoint with query":  func(c *TokenServiceConfig) { c.Endpoint = "https://tts.example.org/token?x=1" },
		"no key":               func(c *TokenServiceConfig) { c.SigningKey = nil },
		"HS256":                func(c *TokenServiceConfig) { c.Alg = "HS256" },
		"alg does not fit key": func(c *TokenServiceConfig) { c.Alg = "ES384" },
		"issuer without keys": func(c *TokenServiceConfig) {
			c.SubjectIssuers = []TrustedIssuer{{Issuer: "x", Audiences: []string{"a"}}}
		},
		"two issuers, one without SubjectPrefix": func(c *TokenServiceConfig) {
			c.SubjectIssuers = []TrustedIssuer{{Issuer: "x", Keys: ks, Audiences: []string{"a"}, SubjectPrefix: "x:"},
				{Issuer: "y", Keys: ks, Audiences: []string{"a"}}}
		},
		"two issuers, one prefix begins the other": func(c *TokenServiceConfig) {
			c.SubjectIssuers = []TrustedIssuer{{Issuer: "x", Keys: ks, Audiences: []string{"a"}, SubjectPrefix: "x"},
				{Issuer: "y", Keys: ks, Audiences: []string{"a"}, SubjectPrefix: "xa"}}
		},
		"negative lifetime":     func(c *TokenServiceConfig) { c.TxnTokenLifetime = -time.Second },
		"unknown allowed alg":   func(c *TokenServiceConfig) { c.AllowedAlgs = []string{"none"} },
		"symmetric publish key": func(c *TokenServiceConfig) { c.PublishKeys = []jose.JSONWebKey{{Key: []byte("secret"), KeyID: "s"}} },
	} {
		c := good
		mod(&c)
		if _, err := NewTokenService(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// assertNoTokensLogged checks that no log entry of either side carries a whole token.
func assertNoTokensLogged(t *testing.T, e *env, tokens ...string) {
	t.Helper()
	if e.logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	for _, entry := range e.logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				t.Fatalf("log entry %q carries a token", entry.Message)
			}
		}
	}
}

// TestRequestContextCannotForgeSubjectFacts: what the token service records about the subject in rctx is its own,
// whatever request_context the requester sends.
func TestRequestContextCannotForgeSubjectFacts(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	form := e.txnForm(e.idp.token(t, now, nil))
	form.Set("request_context", `{"subject_iat": 4102444800, "subject_iss": "https://evil.example.com", "req_ip": "10.0.0.1"}`)
	st, body := e.post(nil, form, e.wptHeader(e.endpoint))
	if st != 200 {
		t.Fatalf("%d %v", st, body)
	}
	c, _ := claimsOf(t, body["access_token"].(string))
	rctx, _ := c["rctx"].(map[string]any)
	if rctx["subject_iat"] != float64(now.Add(-time.Minute).Unix()) || rctx["subject_iss"] != userIss || rctx["req_ip"] != "10.0.0.1" {
		t.Errorf("rctx %v", rctx)
	}
}

// TestAccessTokenGrants: access tokens go only to the workloads a grant names, for its target, with at most its
// scopes; the default policy grants none.
func TestAccessTokenGrants(t *testing.T) {
	e := newEnv(t)
	toolWIT := e.ca.CreateWITSVID(toolID)
	const legacy = "https://legacy.example.org"
	cases := []struct {
		name      string
		form      func(url.Values)
		asTool    bool
		code      string
		wantScope any
	}{
		{name: "granted audience and scope", wantScope: "orders.read"},
		{name: "granted target as resource", form: func(f url.Values) {
			f.Del("audience")
			f.Set("resource", legacy)
		}, wantScope: "orders.read"},
		{name: "unscoped request is narrowed to the grant", form: func(f url.Values) {
			f.Del("scope")
			f.Set("subject_token", e.idp.token(t, e.clock.Now(), nil))
			f.Set("subject_token_type", TokenTypeAccessToken)
		}, wantScope: "orders.read"},
		{name: "audience no grant names", form: func(f url.Values) { f.Set("audience", "https://payments.example.com/api") },
			code: CodeInvalidTarget},
		{name: "second target no grant names", form: func(f url.Values) { f.Add("audience", "https://payments.example.com/api") },
			code: CodeInvalidTarget},
		{name: "workload the grant does not name", asTool: true, code: CodeInvalidTarget},
		{name: "scope beyond the grant", form: func(f url.Values) { f.Set("scope", "orders.read orders.create") },
			code: CodeInvalidScope},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := e.txnForm("")
			f.Set("requested_token_type", TokenTypeAccessToken)
			f.Set("audience", legacy)
			f.Set("scope", "orders.read")
			hdr := e.wptHeader(e.endpoint)
			if c.asTool {
				f.Set("actor_token", toolWIT.Token)
				f.Set("subject_token", toolWIT.Token)
				hdr = http.Header{wire.HeaderWPT: {e.wpt(toolWIT, e.endpoint)}}
			}
			if c.form != nil {
				c.form(f)
			}
			st, body := e.post(nil, f, hdr)
			if !issuedUnless(t, st, body, c.code) {
				return
			}
			if claims, _ := claimsOf(t, body["access_token"].(string)); claims["scope"] != c.wantScope || claims["aud"] != legacy {
				t.Errorf("claims %v, want aud %s scope %v", claims, legacy, c.wantScope)
			}
		})
	}
	t.Run("default policy refuses access tokens", func(t *testing.T) {
		d := newEnv(t, func(c *TokenServiceConfig) { c.Policy = nil })
		f := d.txnForm("")
		f.Set("requested_token_type", TokenTypeAccessToken)
		f.Set("audience", legacy)
		f.Set("scope", "orders.read")
		if st, body := d.post(nil, f, d.wptHeader(d.endpoint)); st != 400 || body["error"] != CodeInvalidTarget {
			t.Fatalf("got %d %v, want 400 invalid_target", st, body)
		}
		if st, body := d.post(nil, d.txnForm(""), d.wptHeader(d.endpoint)); st != 200 {
			t.Fatalf("Txn-Token under the default policy: %d %v", st, body)
		}
	})
}

// TestUnscopedUserToken: a user token without scope or scp bounds the scope at its issuer's Scopes, never at
// whatever the agent names (the Txn-Token draft: an unknown subject scope is not unlimited); a request without
// scope gets a token without scope.
func TestUnscopedUserToken(t *testing.T) {
	withScopes := func(scopes ...string) envOption {
		return func(c *TokenServiceConfig) { c.SubjectIssuers[0].Scopes = scopes }
	}
	cases := []struct {
		name      string
		opts      []envOption
		form      func(url.Values)
		code      string
		wantScope any
	}{
		{name: "issuer lists no scopes", form: func(f url.Values) { f.Set("scope", "payments.transfer admin") },
			code: CodeInvalidScope},
		{name: "issuer lists no scopes, modest request", code: CodeInvalidScope},
		{name: "within the issuer's scopes", opts: []envOption{withScopes("orders.read", "orders.create")},
			wantScope: "orders.create"},
		{name: "beyond the issuer's scopes", opts: []envOption{withScopes("orders.read")},
			code: CodeInvalidScope},
		{name: "access token without scope", form: func(f url.Values) {
			f.Set("requested_token_type", TokenTypeAccessToken)
			f.Set("audience", legacyGrant.Audience)
			f.Del("scope")
		}, wantScope: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.opts...)
			f := e.txnForm(e.idp.token(t, e.clock.Now(), func(m map[string]any) { delete(m, "scope") }))
			if c.form != nil {
				c.form(f)
			}
			st, body := e.post(nil, f, e.wptHeader(e.endpoint))
			if !issuedUnless(t, st, body, c.code) {
				return
			}
			if claims, _ := claimsOf(t, body["access_token"].(string)); claims["scope"] != c.wantScope || claims["sub"] != "alice" {
				t.Errorf("claims %v, want sub alice scope %v", claims, c.wantScope)
			}
		})
	}
}

// TestServerErrorHidesDetail: a server_error tells the requester nothing of its cause (a policy's or store's
// error may name hosts, users, queries); the operator finds the cause in the log.
func TestServerErrorHidesDetail(t *testing.T) {
	const secret = `dial tcp 10.9.8.7:5432: password authentication failed for user "tts_admin"`
	for _, c := range []struct {
		name   string
		policy Policy
		detail string
	}{
		{name: "policy fails", detail: secret,
			policy: PolicyFunc(func(context.Context, *ExchangeRequest) ([]string, error) { return nil, errors.New(secret) })},
		{name: "policy grants what was not asked", detail: "tts_internal_scope",
			policy: PolicyFunc(func(context.Context, *ExchangeRequest) ([]string, error) { return []string{"tts_internal_scope"}, nil })},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.policy = c.policy
			st, body := e.post(nil, e.txnForm(""), e.wptHeader(e.endpoint))
			if st != 500 || body["error"] != CodeServerError {
				t.Fatalf("got %d %v, want 500 server_error", st, body)
			}
			if d := body["error_description"]; d != serverErrorDescription {
				t.Errorf("error_description %q, want the generic %q", d, serverErrorDescription)
			}
			logged := e.logs.FilterMessage("token exchange failed").FilterFieldKey("description").All()
			if len(logged) != 1 || !strings.Contains(logged[0].ContextMap()["description"].(string), c.detail) {
				t.Errorf("the cause %q is not in the log: %v", c.detail, logged)
			}
		})
	}
}

// TestNoTokenFromAnExpiredSubject: a Txn-Token is not replaced (or exchanged) once the service's clock reaches
// its exp, with no clock skew for the service's own tokens; and a subject token accepted within the skew yields
// no token whose exp is not after its iat.
func TestNoTokenFromAnExpiredSubject(t *testing.T) {
	cases := []struct {
		name string
		// past is how far past the subject token's exp the request is made (negative: before it).
		past      time.Duration
		txn       bool
		requested string
		ok        bool
	}{
		{name: "Txn-Token replaced before exp", txn: true, past: -2 * time.Second, ok: true},
		{name: "Txn-Token replaced at exp", txn: true},
		{name: "Txn-Token replaced within the skew", txn: true, past: 10 * time.Second},
		{name: "Txn-Token exchanged for an access token within the skew", txn: true, past: 10 * time.Second, requested: TokenTypeAccessToken},
		{name: "user token within the skew", past: 10 * time.Second},
		{name: "user token at exp, access token", requested: TokenTypeAccessToken},
		{name: "user token before exp", past: -2 * time.Second, ok: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			exp := time.Unix(e.clock.Now().Add(2*time.Minute).Unix(), 0)
			user := e.idp.token(t, e.clock.Now(), func(m map[string]any) { m["exp"] = exp.Unix() })
			f := e.txnForm(user)
			f.Set("scope", "orders.read")
			if c.txn {
				tok, err := e.exchanger(nil).Exchange(context.Background(), TokenRequest{
					SubjectToken: user, SubjectTokenType: TokenTypeAccessToken, Scope: "orders.read"})
				if err != nil {
					t.Fatal(err)
				}
				info, err := e.verifier(nil).Verify(context.Background(), tok.Value)
				if err != nil {
					t.Fatal(err)
				}
				exp = info.Expiry
				f.Set("subject_token", tok.Value)
				f.Set("subject_token_type", TokenTypeTxnToken)
			}
			if c.requested != "" {
				f.Set("requested_token_type", c.requested)
				f.Set("audience", legacyGrant.Audience)
			}
			e.clock.Add(exp.Add(c.past).Sub(e.clock.Now()))
			st, body := e.post(nil, f, e.wptHeader(e.endpoint))
			if !c.ok {
				if st != 400 || body["error"] != CodeInvalidRequest || body["reason"] != "expired" {
					t.Fatalf("got %d %v, want 400 invalid_request (expired)", st, body)
				}
				return
			}
			if st != 200 {
				t.Fatalf("got %d %v", st, body)
			}
			if claims, _ := claimsOf(t, body["access_token"].(string)); claims["exp"].(float64) <= claims["iat"].(float64) {
				t.Errorf("issued iat %v exp %v", claims["iat"], claims["exp"])
			}
		})
	}
}

// issuedUnless checks a token endpoint answer: refused with code (400) when code is set, else a token (200). It
// reports whether a token was issued.
func issuedUnless(t *testing.T, status int, body map[string]any, code string) bool {
	t.Helper()
	if code != "" {
		if status != 400 || body["error"] != code || body["access_token"] != nil {
			t.Fatalf("got %d %v, want 400 %s", status, body, code)
		}
		return false
	}
	if status != 200 {
		t.Fatalf("got %d %v", status, body)
	}
	return true
}
