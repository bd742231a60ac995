package signals

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// rawClaims is a valid SET payload with jti "neg-1", to be spoiled by negative tests.
func (f *fixture) rawClaims() map[string]any {
	return map[string]any{
		"iss":    testIssuer,
		"jti":    "neg-1",
		"iat":    f.clock.Now().Unix(),
		"aud":    testAudience,
		"sub_id": map[string]any{"format": "uri", "uri": "spiffe://example.org/agent/a"},
		"events": map[string]any{EventSessionRevoked: map[string]any{}},
	}
}

// signRaw signs any payload with any header type, for SETs Sign would not make.
func signRaw(t testing.TB, key jose.JSONWebKey, typ string, payload any) string {
	t.Helper()
	raw, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(raw)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func TestPushRefusals(t *testing.T) {
	b64 := base64.RawURLEncoding.EncodeToString
	tests := []struct {
		name   string
		opts   []fixtureOpt
		body   func(f *fixture) string
		hdr    map[string]string
		method string
		status int
		code   string
		reason *autherr.Reason // checked through Process when the body is a token
		// noFollowUp: the fixture's configuration refuses every SET, so the follow-up check cannot run.
		noFollowUp bool
	}{
		{name: "unsigned (alg none)", status: 400, code: CodeAuthenticationFailed, reason: autherr.ErrUnsupportedAlg,
			body: func(f *fixture) string {
				p, _ := json.Marshal(f.rawClaims())
				return b64([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." + b64(p) + "."
			}},
		{name: "symmetric alg HS256", status: 400, code: CodeInvalidKey, reason: autherr.ErrUnsupportedAlg,
			body: func(f *fixture) string {
				return signRaw(t, jose.JSONWebKey{Key: []byte(strings.Repeat("k", 32)), KeyID: "k1", Algorithm: "HS256"}, "secevent+jwt", f.rawClaims())
			}},
		{name: "wrong key, same kid", status: 400, code: CodeInvalidKey, reason: autherr.ErrBadSignature,
			body: func(f *fixture) string { return signRaw(t, newKey(t, "k1", jose.ES256), "secevent+jwt", f.rawClaims()) }},
		{name: "unknown kid", status: 400, code: CodeInvalidKey, reason: autherr.ErrUntrustedIssuer,
			body: func(f *fixture) string { return signRaw(t, newKey(t, "k9", jose.ES256), "secevent+jwt", f.rawClaims()) }},
		{name: "alg the key cannot do", status: 400, code: CodeInvalidKey, reason: autherr.ErrUntrustedIssuer,
			body: func(f *fixture) string { return signRaw(t, newKey(t, "k1", jose.ES384), "secevent+jwt", f.rawClaims()) }},
		{name: "alg not allowed for the transmitter", status: 400, code: CodeInvalidKey, reason: autherr.ErrUnsupportedAlg, noFollowUp: true,
			opts: []fixtureOpt{func(c *ReceiverConfig) {
				c.Transmitters = append(c.Transmitters, TransmitterConfig{Issuer: "https://other.example.com", Audience: []string{"x"},
					JWKSFile: c.Transmitters[0].JWKSFile, AllowedAlgs: []jose.SignatureAlgorithm{jose.EdDSA}})
				c.Transmitters[0].AllowedAlgs = []jose.SignatureAlgorithm{jose.RS256}
			}},
			body: func(f *fixture) string { return f.sign(t, f.claims()) }},
		{name: "wrong issuer", status: 400, code: CodeInvalidIssuer, reason: autherr.ErrUntrustedIssuer,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "iss", "https://evil.example.com"))
			}},
		{name: "wrong audience", status: 400, code: CodeInvalidAudience, reason: autherr.ErrWrongAudience,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "aud", []string{"https://someone-else.example.com"}))
			}},
		{name: "no audience", status: 400, code: CodeInvalidAudience, reason: autherr.ErrWrongAudience,
			body: func(f *fixture) string { return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "aud", nil)) }},
		{name: "expired (iat too old)", status: 400, code: CodeInvalidRequest, reason: autherr.ErrExpired,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "iat", f.clock.Now().Add(-25*time.Hour).Unix()))
			}},
		{name: "iat in the future", status: 400, code: CodeInvalidRequest, reason: autherr.ErrNotYetValid,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "iat", f.clock.Now().Add(10*time.Minute).Unix()))
			}},
		{name: "exp passed", status: 400, code: CodeInvalidRequest, reason: autherr.ErrExpired,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "exp", f.clock.Now().Add(-time.Second).Unix()))
			}},
		{name: "typ JWT", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string { return signRaw(t, f.key, "JWT", f.rawClaims()) }},
		{name: "no typ", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string { return signRaw(t, f.key, "", f.rawClaims()) }},
		{name: "malformed JWT", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(*fixture) string { return "eyJhbGciOiJFUzI1NiJ9.not base64!.sig" }},
		{name: "two parts", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(*fixture) string { return "abc.def" }},
		{name: "JWE-shaped", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(*fixture) string { return "a.b.c.d.e" }},
		{name: "empty body", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(*fixture) string { return "" }},
		{name: "payload not an object", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string { return signRaw(t, f.key, "secevent+jwt", []string{"iss"}) }},
		{name: "no events", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "events", map[string]any{}))
			}},
		{name: "no jti", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string { return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "jti", nil)) }},
		{name: "no subject", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string { return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "sub_id", nil)) }},
		{name: "bad subject", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "sub_id", map[string]any{"format": "email"}))
			}},
		{name: "event payload off its definition", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "events",
					map[string]any{EventCredentialChange: map[string]any{"credential_type": "x509"}}))
			}},
		{name: "one good and one bad event apply nothing", status: 400, code: CodeInvalidRequest, reason: autherr.ErrMalformed,
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "events", map[string]any{
					EventSessionRevoked:  map[string]any{},
					EventRiskLevelChange: map[string]any{"principal": "USER", "current_level": "EXTREME"}}))
			}},
		{name: "event not allowed for the transmitter", status: 400, code: CodeAccessDenied, reason: autherr.ErrDenied, noFollowUp: true,
			opts: []fixtureOpt{func(c *ReceiverConfig) { c.Transmitters[0].AllowedEvents = []string{EventRiskLevelChange} }},
			body: func(f *fixture) string { return f.sign(t, f.claims()) }},
		{name: "push without the Authorization header", status: 400, code: CodeAuthenticationFailed,
			opts: []fixtureOpt{func(c *ReceiverConfig) { c.Transmitters[0].PushAuthorization = "Bearer s3cret" }},
			body: func(f *fixture) string { return f.sign(t, f.claims()) }},
		{name: "push with the wrong Authorization header", status: 400, code: CodeAuthenticationFailed,
			opts: []fixtureOpt{func(c *ReceiverConfig) { c.Transmitters[0].PushAuthorization = "Bearer s3cret" }},
			hdr:  map[string]string{"Authorization": "Bearer guess"},
			body: func(f *fixture) string { return f.sign(t, f.claims()) }},
		{name: "oversized body", status: 400, code: CodeInvalidRequest, noFollowUp: true,
			opts: []fixtureOpt{func(c *ReceiverConfig) { c.MaxBodyBytes = 512 }},
			body: func(f *fixture) string {
				return signRaw(t, f.key, "secevent+jwt", with(f.rawClaims(), "txn", strings.Repeat("x", 600)))
			}},
		{name: "wrong Content-Type", status: 400, code: CodeInvalidRequest, hdr: map[string]string{"Content-Type": "application/jwt"},
			body: func(f *fixture) string { return f.sign(t, f.claims()) }},
		{name: "GET", status: 405, method: http.MethodGet, body: func(*fixture) string { return "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.opts...)
			body := tt.body(f)
			if tt.reason != nil {
				_, err := f.recv.Process(context.Background(), body)
				var se *SETError
				if !errors.As(err, &se) || se.Code != tt.code || !errors.Is(err, tt.reason) {
					t.Fatalf("Process: %v, want %s wrapping %s", err, tt.code, tt.reason)
				}
			}
			req := httptest.NewRequest(tt.method, "/ssf/push", strings.NewReader(body))
			if tt.method == "" {
				req.Method = http.MethodPost
			}
			req.Header.Set("Content-Type", MediaTypeSET)
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			f.recv.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body.String(), tt.status)
			}
			if tt.code != "" {
				var eb setErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Err != tt.code || eb.Description == "" {
					t.Fatalf("body %s: want err %q with a description", rec.Body.String(), tt.code)
				}
			}
			if calls := f.sink.Calls(); len(calls) != 0 {
				t.Fatalf("Sink.Apply was called: %v", calls)
			}
			if tt.noFollowUp {
				return
			}
			// Nothing was recorded either: a valid SET with the same jti is still applied.
			good := f.claims()
			good.JTI = "neg-1"
			if code, eb := pushTo(t, f.recv, f.sign(t, good), map[string]string{"Authorization": "Bearer s3cret"}); code != http.StatusAccepted || len(f.sink.Calls()) != 1 {
				t.Fatalf("follow-up valid SET: %d %+v, %d applies", code, eb, len(f.sink.Calls()))
			}
		})
	}
}

func TestPushApplies(t *testing.T) {
	f := newFixture(t)
	tok := f.sign(t, f.claims())
	if code, eb := pushTo(t, f.recv, tok, nil); code != http.StatusAccepted {
		t.Fatalf("push: %d %+v", code, eb)
	}
	calls := f.sink.Calls()
	if len(calls) != 1 || len(calls[0]) != 1 {
		t.Fatalf("calls %v", calls)
	}
	r := calls[0][0].Revocation
	if r.GetSubject().GetKind() != KindSPIFFE || r.GetSubject().GetValue() != "spiffe://example.org/agent/a" ||
		!r.GetNotBefore().AsTime().Equal(f.clock.Now().Add(-time.Minute)) {
		t.Fatalf("revocation %v", r)
	}

	// A replay is accepted again (the transmitter may have missed our 202) and applies nothing.
	f.clock.Advance(time.Hour)
	res, err := f.recv.Process(context.Background(), tok)
	if err != nil || !res.Duplicate {
		t.Fatalf("replay: %+v %v", res, err)
	}
	if code, _ := pushTo(t, f.recv, tok, nil); code != http.StatusAccepted || len(f.sink.Calls()) != 1 {
		t.Fatalf("replay over HTTP: %d, %d calls", code, len(f.sink.Calls()))
	}

	// An unknown event type is accepted, logged, and changes nothing.
	c := f.claims()
	c.Events = map[string]map[string]any{"https://example.com/events/custom": {"x": 1}}
	res, err = f.recv.Process(context.Background(), f.sign(t, c))
	if err != nil || len(res.Changes) != 0 || len(res.Ignored) != 1 || len(f.sink.Calls()) != 1 {
		t.Fatalf("unknown event: %+v %v", res, err)
	}
}

func TestPushAlgorithmsAndHeaders(t *testing.T) {
	keys := []jose.JSONWebKey{newKey(t, "rs", jose.RS256), newKey(t, "ps", jose.PS256), newKey(t, "es", jose.ES384), newKey(t, "ed", jose.EdDSA)}
	f := newFixture(t, func(c *ReceiverConfig) {
		path := filepath.Join(t.TempDir(), "multi.json")
		if err := os.WriteFile(path, jwksOf(t, keys...), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Transmitters[0].JWKSFile = path
		c.Transmitters[0].PushAuthorization = "Bearer s3cret"
	})
	for _, k := range keys {
		t.Run(k.Algorithm, func(t *testing.T) {
			if code, eb := pushTo(t, f.recv, signRaw(t, k, "secevent+jwt", with(f.rawClaims(), "jti", k.KeyID)), map[string]string{"Authorization": "Bearer s3cret"}); code != 202 {
				t.Fatalf("%d %+v", code, eb)
			}
		})
	}
	t.Run("typ application/secevent+jwt, no kid, array aud, Content-Type with parameter", func(t *testing.T) {
		k := keys[3]
		k.KeyID = ""
		tok := signRaw(t, k, "application/secevent+jwt", with(f.rawClaims(), "jti", "nokid", "aud", []string{"other", testAudience}))
		code, eb := pushTo(t, f.recv, tok, map[string]string{"Authorization": "Bearer s3cret", "Content-Type": "application/secevent+jwt; charset=utf-8"})
		if code != 202 {
			t.Fatalf("%d %+v", code, eb)
		}
	})
}

func TestPushSinkFailureIsRetried(t *testing.T) {
	f := newFixture(t)
	tok := f.sign(t, f.claims())
	f.sink.setErr(errors.New("disk full"))
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tok))
	req.Header.Set("Content-Type", MediaTypeSET)
	rec := httptest.NewRecorder()
	f.recv.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	// The failed SET was not marked: the transmitter's retry applies it.
	f.sink.setErr(nil)
	if code, _ := pushTo(t, f.recv, tok, nil); code != http.StatusAccepted || len(f.sink.Calls()) != 1 {
		t.Fatalf("retry: %d, %d calls", code, len(f.sink.Calls()))
	}
}

func TestReplayAfterRestart(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "state.db")
	key := newKey(t, "k1", jose.ES256)
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, jwksOf(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	start := func() (*Receiver, *recordingSink, func()) {
		st, err := openStoreNoCleanup(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		sink := &recordingSink{}
		r, err := NewReceiver(ReceiverConfig{
			Transmitters: []TransmitterConfig{{Issuer: testIssuer, Audience: []string{testAudience}, JWKSFile: jwksPath}},
			Sink:         sink, Dedup: NewStoreDedup(st, clk.Now), Now: clk.Now, Logger: zaptest.NewLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		return r, sink, func() { _ = st.Close() }
	}
	tok, err := Sign(key, SETClaims{Issuer: testIssuer, Audience: []string{testAudience}, IssuedAt: clk.Now(),
		Subject: SubjectID{Format: FormatEmail, Email: "alice@example.com"}, Events: map[string]map[string]any{EventAccountDisabled: nil}})
	if err != nil {
		t.Fatal(err)
	}
	r1, sink1, stop1 := start()
	if code, _ := pushTo(t, r1, tok, nil); code != 202 || len(sink1.Calls()) != 1 {
		t.Fatalf("first delivery: %d, %d calls", code, len(sink1.Calls()))
	}
	stop1()

	clk.Advance(12 * time.Hour)
	r2, sink2, stop2 := start()
	defer stop2()
	if code, _ := pushTo(t, r2, tok, nil); code != 202 || len(sink2.Calls()) != 0 {
		t.Fatalf("replay after restart: %d, %d calls (want 202 and nothing applied)", code, len(sink2.Calls()))
	}
}

func TestConcurrentDeliveriesOfOneSET(t *testing.T) {
	f := newFixture(t)
	tok := f.sign(t, f.claims())
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _ = pushTo(t, f.recv, tok, nil)
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("delivery %d: %d", i, c)
		}
	}
	// Racing deliveries may each apply (idempotently) before one marks; at least one did, and now it is marked.
	if n := len(f.sink.Calls()); n < 1 {
		t.Fatalf("%d applies", n)
	}
	n := len(f.sink.Calls())
	if code, _ := pushTo(t, f.recv, tok, nil); code != 202 || len(f.sink.Calls()) != n {
		t.Fatal("not marked after the race")
	}
}

func TestNewReceiverConfigErrors(t *testing.T) {
	sink, dedup := &recordingSink{}, NewStoreDedup(openStore(t, filepath.Join(t.TempDir(), "s.db")), nil)
	good := TransmitterConfig{Issuer: testIssuer, Audience: []string{testAudience}, JWKSURL: "https://idp.example.com/jwks"}
	tests := []struct {
		name string
		cfg  ReceiverConfig
	}{
		{"no sink", ReceiverConfig{Dedup: dedup, Transmitters: []TransmitterConfig{good}}},
		{"no dedup", ReceiverConfig{Sink: sink, Transmitters: []TransmitterConfig{good}}},
		{"no audience", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{with2(good, func(c *TransmitterConfig) { c.Audience = nil })}}},
		{"both JWKS sources", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{with2(good, func(c *TransmitterConfig) { c.JWKSFile = "x" })}}},
		{"http JWKS", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{with2(good, func(c *TransmitterConfig) { c.JWKSURL = "http://idp.example.com/jwks" })}}},
		{"HMAC allowed", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{with2(good, func(c *TransmitterConfig) { c.AllowedAlgs = []jose.SignatureAlgorithm{jose.HS256} })}}},
		{"missing JWKS file", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{with2(good, func(c *TransmitterConfig) { c.JWKSURL, c.JWKSFile = "", "/nonexistent" })}}},
		{"duplicate issuer", ReceiverConfig{Sink: sink, Dedup: dedup, Transmitters: []TransmitterConfig{good, good}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewReceiver(tt.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func with2(c TransmitterConfig, f func(*TransmitterConfig)) TransmitterConfig {
	f(&c)
	return c
}
