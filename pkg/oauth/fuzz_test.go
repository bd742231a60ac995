package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/wire"
)

// FuzzParseTokenRequest: no body makes the form parser panic, and what it accepts is consistent.
func FuzzParseTokenRequest(f *testing.F) {
	f.Add([]byte("grant_type=" + GrantTypeTokenExchange + "&audience=example.org&scope=a+b&subject_token=x.y.z&subject_token_type=" + TokenTypeJWT))
	f.Add([]byte("grant_type=" + GrantTypeTokenExchange + "&requested_token_type=" + TokenTypeAccessToken + "&resource=https://a.example/&request_details=%7B%22a%22%3A1%7D"))
	f.Add([]byte("grant_type=client_credentials"))
	f.Add([]byte("scope=%ZZ&&&=="))
	f.Add([]byte("grant_type=" + GrantTypeTokenExchange + "&request_context=%7B%22a%22%3A1%2C%22a%22%3A2%7D&audience=x&scope=s"))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, oe := parseTokenRequest(body)
		if oe != nil {
			if req != nil || oe.Code == "" || oe.Err == nil || autherrOf(oe) == nil {
				t.Fatalf("bad refusal %#v", oe)
			}
			return
		}
		switch req.requestedTokenType {
		case TokenTypeTxnToken:
			if len(req.audiences) != 1 || len(req.scope) == 0 {
				t.Fatalf("accepted a Txn-Token request without audience or scope: %+v", req)
			}
		case TokenTypeAccessToken:
			if len(req.audiences)+len(req.resources) == 0 {
				t.Fatal("accepted an access token request without target")
			}
		default:
			t.Fatalf("requested type %q", req.requestedTokenType)
		}
		for _, s := range req.scope {
			if s == "" || strings.ContainsAny(s, " \"\\") {
				t.Fatalf("scope token %q", s)
			}
		}
		if (req.subjectToken == "") != (req.subjectTokenType == "") || (req.actorToken == "") != (req.actorTokenType == "") {
			t.Fatal("a token without its type")
		}
	})
}

// FuzzTokenEndpoint: any body and proof header gets a JSON answer, and no token without valid credentials.
func FuzzTokenEndpoint(f *testing.F) {
	e := newEnv(f)
	good := e.txnForm("").Encode()
	f.Add(good, "")
	f.Add(good, "a.b.c")
	f.Add("grant_type="+GrantTypeTokenExchange, e.wpt(e.agentWIT, e.endpoint))
	f.Fuzz(func(t *testing.T, body, proof string) {
		r := httptest.NewRequest(http.MethodPost, e.endpoint, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if proof != "" {
			r.Header.Set(wire.HeaderWPT, proof)
		}
		w := httptest.NewRecorder()
		e.svc.ServeHTTP(w, r)
		var m map[string]any
		if err := jsonUnmarshal(w.Body.Bytes(), &m); err != nil {
			t.Fatalf("answer %q is not JSON", w.Body.Bytes())
		}
		if w.Code == http.StatusOK {
			// Only a genuine WPT of the agent can authenticate; the fuzzer cannot forge one.
			t.Fatalf("token issued for body %q proof %q", body, proof)
		}
	})
}

// FuzzTxnVerify: any string given to the verifier is refused without panic unless it is a genuine token.
func FuzzTxnVerify(f *testing.F) {
	e := newEnv(f)
	v := e.verifier(nil)
	f.Add(e.mintTxn(nil, serviceKI, TypTxnToken, nil))
	f.Add(e.mintTxn(nil, serviceKI, TypTxnToken, func(m map[string]any) { m["act"] = map[string]any{"sub": 1} }))
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		info, err := v.Verify(context.Background(), token)
		if err != nil {
			if autherrOf(err) == nil {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if info.Subject == "" || info.TransactionID == "" || len(info.Scope) == 0 || info.RequestingWorkload == "" {
			t.Fatalf("accepted without required claims: %+v", info)
		}
		h := http.Header{wire.HeaderTxnToken: {token}}
		if _, err := TxnTokenFromHeader(h); err != nil {
			t.Fatalf("a verified token does not pass header extraction: %v", err)
		}
	})
}

// FuzzVerifyUserToken: subject tokens from the wire never panic the verifier.
func FuzzVerifyUserToken(f *testing.F) {
	e := newEnv(f)
	now := e.clock.Now()
	f.Add(e.idp.token(f, now, nil))
	f.Add(e.idp.token(f, now, func(m map[string]any) { m["scp"] = []any{"a", 1} }))
	f.Add(e.idp.token(f, now, func(m map[string]any) { m["may_act"] = "x" }))
	f.Add("x.y.z")
	f.Fuzz(func(t *testing.T, token string) {
		si, err := e.svc.verifyUserToken(context.Background(), token, TokenTypeAccessToken, now)
		if err != nil {
			if autherrOf(err) == nil {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if si.sub == "" || si.issuer != userIss {
			t.Fatalf("accepted %+v", si)
		}
	})
}
