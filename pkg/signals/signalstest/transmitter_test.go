package signalstest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/signals/signalstest"
)

const (
	eventRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	verification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
)

// call sends a JSON request to tr and decodes the JSON answer, if any, into out.
func call(t *testing.T, tr *signalstest.Transmitter, method, path, auth string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, tr.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := tr.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// verifySET checks a token's signature against tr's JWKS and returns its header and claims.
func verifySET(t *testing.T, tr *signalstest.Transmitter, token string) (jose.Header, map[string]any) {
	t.Helper()
	var jwks jose.JSONWebKeySet
	resp, err := tr.Client().Get(tr.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	keys := jwks.Key(h.KeyID)
	if len(keys) != 1 || !keys[0].IsPublic() {
		t.Fatalf("JWKS has %d public keys for kid %q", len(keys), h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return h, claims
}

func TestSignAndRotate(t *testing.T) {
	at := time.Unix(1_760_000_000, 0)
	tr := signalstest.New(t, signalstest.Options{TLS: true, IssuerPath: "/tenant1", Audience: "https://rp.example",
		CacheControl: "max-age=60", Now: func() time.Time { return at }})
	if tr.Issuer != tr.URL+"/tenant1" || !strings.HasPrefix(tr.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s, issuer %s", tr.URL, tr.Issuer)
	}
	s := tr.Sign(signalstest.SET{Subject: map[string]string{"format": "email", "email": "a@example.com"},
		Events: map[string]map[string]any{eventRevoked: nil}})
	h, claims := verifySET(t, tr, s.Token)
	if h.KeyID != "t1" || h.ExtraHeaders["typ"] != "secevent+jwt" {
		t.Fatalf("header %+v", h)
	}
	events, _ := claims["events"].(map[string]any)
	if claims["iss"] != tr.Issuer || claims["aud"] != "https://rp.example" || claims["jti"] != s.JTI || s.JTI == "" ||
		claims["iat"] != float64(at.Unix()) || events[eventRevoked] == nil {
		t.Fatalf("claims %v", claims)
	}

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	old := tr.Key()
	tr.SetKeys(jose.JSONWebKey{Key: priv, KeyID: "t2", Algorithm: string(jose.EdDSA), Use: "sig"}, old)
	s2 := tr.Sign(signalstest.SET{JTI: "j2", Audience: []string{"a", "b"}, Events: map[string]map[string]any{eventRevoked: nil}})
	if h, claims := verifySET(t, tr, s2.Token); h.KeyID != "t2" || s2.JTI != "j2" || len(claims["aud"].([]any)) != 2 {
		t.Fatalf("after rotation: kid %q, claims %v", h.KeyID, claims)
	}
	// The old key is still published, so what it signed still verifies.
	verifySET(t, tr, s.Token)

	resp, err := tr.Client().Get(tr.URL + "/jwks")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "max-age=60" {
		t.Fatalf("Cache-Control %q", cc)
	}
	tr.SetJWKSStatus(http.StatusServiceUnavailable)
	if code := call(t, tr, http.MethodGet, "/jwks", "", nil, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("failing JWKS: HTTP %d", code)
	}
	if n := tr.Counts().JWKSFetches; n != 5 {
		t.Fatalf("%d JWKS fetches, want 5", n)
	}
}

// receiver is a push endpoint that records the headers and bodies it gets.
type receiver struct {
	mu   sync.Mutex
	got  []http.Header
	sets []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got, rc.sets = append(rc.got, r.Header.Clone()), append(rc.sets, string(b))
	rc.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func (rc *receiver) received() ([]http.Header, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got), slices.Clone(rc.sets)
}

func TestStreamsPushAndVerification(t *testing.T) {
	tr := signalstest.New(t, signalstest.Options{EventsSupported: []string{eventRevoked}})
	rc := &receiver{}
	push := httptest.NewServer(rc)
	t.Cleanup(push.Close)

	var md map[string]any
	if code := call(t, tr, http.MethodGet, "/.well-known/ssf-configuration", "", nil, &md); code != http.StatusOK ||
		md["issuer"] != tr.Issuer || md["configuration_endpoint"] != tr.URL+"/streams" {
		t.Fatalf("metadata: HTTP %d %v", code, md)
	}
	req := map[string]any{"delivery": signalstest.Delivery{Method: "urn:ietf:rfc:8935", EndpointURL: push.URL,
		AuthorizationHeader: "Bearer push"}, "events_requested": []string{eventRevoked, "urn:other"}}
	if code := call(t, tr, http.MethodPost, "/streams", "Bearer wrong", req, nil); code != http.StatusUnauthorized {
		t.Fatalf("create without authorization: HTTP %d", code)
	}
	var st signalstest.Stream
	if code := call(t, tr, http.MethodPost, "/streams", tr.Authorization, req, &st); code != http.StatusCreated ||
		st.StreamID != "stream-1" || !slices.Equal(st.EventsDelivered, []string{eventRevoked}) || !slices.Equal(st.Aud, []string{tr.Audience}) {
		t.Fatalf("create: HTTP %d %+v", code, st)
	}
	var status map[string]string
	body := map[string]string{"stream_id": "stream-1", "status": "paused"}
	if code := call(t, tr, http.MethodPost, "/status", tr.Authorization, body, &status); code != http.StatusOK || status["status"] != "paused" {
		t.Fatalf("set status: HTTP %d %v", code, status)
	}
	if s := tr.Streams(); len(s) != 1 || s[0].Status != "paused" || s[0].Delivery.AuthorizationHeader != "Bearer push" {
		t.Fatalf("streams %+v", s)
	}

	if code := tr.Send("stream-1", signalstest.SET{JTI: "e1", Events: map[string]map[string]any{eventRevoked: nil}}); code != http.StatusAccepted {
		t.Fatalf("send: HTTP %d", code)
	}
	body = map[string]string{"stream_id": "stream-1", "state": "s1"}
	if code := call(t, tr, http.MethodPost, "/verify", tr.Authorization, body, nil); code != http.StatusNoContent {
		t.Fatalf("verify: HTTP %d", code)
	}
	var got []http.Header
	var sets []string
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the verification push")
		}
		got, sets = rc.received()
	}
	for _, h := range got {
		if h.Get("Content-Type") != "application/secevent+jwt" || h.Get("Authorization") != "Bearer push" {
			t.Fatalf("push headers %v", h)
		}
	}
	_, claims := verifySET(t, tr, sets[1])
	events, _ := claims["events"].(map[string]any)
	ev, _ := events[verification].(map[string]any)
	if sub, _ := claims["sub_id"].(map[string]any); ev["state"] != "s1" || sub["id"] != "stream-1" || tr.Counts().Verifications != 1 {
		t.Fatalf("verification SET %v", claims)
	}

	if code := call(t, tr, http.MethodDelete, "/streams?stream_id=stream-1", tr.Authorization, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: HTTP %d", code)
	}
	if code := call(t, tr, http.MethodGet, "/status?stream_id=stream-1", tr.Authorization, nil, nil); code != http.StatusNotFound {
		t.Fatalf("status of a deleted stream: HTTP %d", code)
	}

	tr.SetDown(true)
	if code := call(t, tr, http.MethodGet, "/.well-known/ssf-configuration", "", nil, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("metadata while down: HTTP %d", code)
	}
	if code := call(t, tr, http.MethodPost, "/streams", tr.Authorization, req, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("create while down: HTTP %d", code)
	}
	if n := tr.Counts(); n.Refused != 2 || n.Created != 1 {
		t.Fatalf("counts %+v", n)
	}
}

type pollAnswer struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

func TestPoll(t *testing.T) {
	tr := signalstest.New(t, signalstest.Options{})
	var st signalstest.Stream
	if code := call(t, tr, http.MethodPost, "/streams", tr.Authorization, map[string]any{}, &st); code != http.StatusCreated ||
		st.Delivery.Method != "urn:ietf:rfc:8936" || st.Delivery.EndpointURL != tr.URL+"/poll" {
		t.Fatalf("create: HTTP %d %+v", code, st)
	}
	ev := map[string]map[string]any{eventRevoked: nil}
	for _, jti := range []string{"a", "b", "c"} {
		if code := tr.Send(st.StreamID, signalstest.SET{JTI: jti, Events: ev}); code != 0 {
			t.Fatalf("send to a poll stream: %d", code)
		}
	}
	var ans pollAnswer
	if code := call(t, tr, http.MethodPost, "/poll", "", map[string]any{"maxEvents": 2}, nil); code != http.StatusUnauthorized {
		t.Fatalf("poll without authorization: HTTP %d", code)
	}
	call(t, tr, http.MethodPost, "/poll", tr.Authorization, map[string]any{"maxEvents": 2, "returnImmediately": true}, &ans)
	if len(ans.Sets) != 2 || ans.Sets["a"] == "" || ans.Sets["b"] == "" || !ans.MoreAvailable {
		t.Fatalf("first poll %+v", ans)
	}
	verifySET(t, tr, ans.Sets["a"])
	ans = pollAnswer{}
	call(t, tr, http.MethodPost, "/poll", tr.Authorization, map[string]any{"ack": []string{"a"},
		"setErrs": map[string]signalstest.SetErr{"b": {Err: "invalid_key", Description: "no"}}, "maxEvents": 5, "returnImmediately": true}, &ans)
	if len(ans.Sets) != 1 || ans.Sets["c"] == "" || ans.MoreAvailable {
		t.Fatalf("second poll %+v", ans)
	}
	if p := tr.Polls(); len(p) != 2 || !slices.Equal(p[0].Returned, []string{"a", "b"}) || !slices.Equal(p[1].Acks, []string{"a"}) {
		t.Fatalf("polls %+v", p)
	}
	if acked, errs := tr.Acked(), tr.SetErrs(); !slices.Equal(acked, []string{"a"}) || errs["b"].Err != "invalid_key" || tr.Counts().Queued != 1 {
		t.Fatalf("acked %v, errors %v", acked, errs)
	}

	// A long poll on an empty queue returns the SET that arrives while it waits.
	call(t, tr, http.MethodPost, "/poll", tr.Authorization, map[string]any{"ack": []string{"c"}, "returnImmediately": true}, nil)
	done := make(chan pollAnswer, 1)
	go func() {
		var a pollAnswer
		req, _ := http.NewRequest(http.MethodPost, tr.URL+"/poll", strings.NewReader(`{"maxEvents":5}`))
		req.Header.Set("Authorization", tr.Authorization)
		if resp, err := tr.Client().Do(req); err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
		}
		done <- a
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(tr.Polls()) < 4 {
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for the long poll")
		case <-time.After(5 * time.Millisecond):
		}
	}
	tr.Enqueue(signalstest.Signed{JTI: "raw", Token: "not-checked"})
	if a := <-done; a.Sets["raw"] != "not-checked" {
		t.Fatalf("long poll %+v", a)
	}
}
