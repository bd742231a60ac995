package controller

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/agentauth/agentauth/pkg/signals"
)

const (
	ssfAudience = "https://agentauth.example.org"
	mgmtToken   = "Bearer mgmt-token"
)

// transmitter is an in-process SSF transmitter on 127.0.0.1 whose issuer is its base URL: metadata, JWKS, stream
// configuration, status, verification and the RFC 8936 poll endpoint, all behind one bearer token.
type transmitter struct {
	t      *testing.T
	srv    *httptest.Server
	issuer string
	key    jose.JSONWebKey
	// down makes metadata and management answer 503, as a transmitter that is not up yet.
	down atomic.Bool

	mu            sync.Mutex
	wg            sync.WaitGroup
	streams       map[string]*signals.StreamConfig
	status        map[string]string
	created       int
	refused       int // management calls answered 503
	verifications int // verification events sent
	queue         []queuedSET
	arrived       chan struct{}
	polls         []pollRecord
}

type queuedSET struct{ jti, token string }

// pollRecord is one poll request as the transmitter saw it, and the SETs it answered with.
type pollRecord struct {
	acks     []string
	setErrs  map[string]setErr
	returned []string
}

type setErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

func newTransmitter(t *testing.T) *transmitter {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tr := &transmitter{t: t, key: jose.JSONWebKey{Key: priv, KeyID: "t1", Algorithm: string(jose.ES256), Use: "sig"},
		streams: map[string]*signals.StreamConfig{}, status: map[string]string{}, arrived: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration", tr.management(tr.metadata))
	mux.HandleFunc("GET /jwks", tr.jwks)
	mux.HandleFunc("/streams", tr.management(tr.stream))
	mux.HandleFunc("/status", tr.management(tr.streamStatus))
	mux.HandleFunc("POST /verify", tr.management(tr.verify))
	mux.HandleFunc("POST /poll", tr.authorized(tr.poll))
	tr.srv = httptest.NewServer(mux)
	tr.issuer = tr.srv.URL
	t.Cleanup(func() {
		tr.wg.Wait()
		tr.srv.Close()
	})
	return tr
}

func (tr *transmitter) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != mgmtToken {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

// management is an endpoint that answers 503 while the transmitter is down.
func (tr *transmitter) management(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if tr.down.Load() {
			tr.mu.Lock()
			tr.refused++
			tr.mu.Unlock()
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Path == "/.well-known/ssf-configuration" {
			h(w, r)
			return
		}
		tr.authorized(h)(w, r)
	}
}

func writeJSONTo(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (tr *transmitter) metadata(w http.ResponseWriter, _ *http.Request) {
	writeJSONTo(w, http.StatusOK, signals.TransmitterMetadata{SpecVersion: "1_0", Issuer: tr.issuer, JWKSURI: tr.issuer + "/jwks",
		DeliveryMethodsSupported: []string{signals.DeliveryPush, signals.DeliveryPoll},
		ConfigurationEndpoint:    tr.issuer + "/streams", StatusEndpoint: tr.issuer + "/status", VerificationEndpoint: tr.issuer + "/verify"})
}

func (tr *transmitter) jwks(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{tr.key.Public()}})
}

func (tr *transmitter) stream(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	id := r.URL.Query().Get("stream_id")
	switch r.Method {
	case http.MethodPost:
		var req signals.StreamRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		tr.created++
		id = fmt.Sprintf("stream-%d", tr.created)
		d := req.Delivery
		if d == nil {
			d = &signals.Delivery{Method: signals.DeliveryPoll, EndpointURL: tr.issuer + "/poll"}
		}
		sc := &signals.StreamConfig{StreamID: id, Iss: tr.issuer, Aud: signals.Audience{ssfAudience}, Delivery: d,
			EventsSupported: signals.KnownEventTypes(), EventsRequested: req.EventsRequested, EventsDelivered: req.EventsRequested,
			Description: req.Description}
		tr.streams[id] = sc
		tr.status[id] = "enabled"
		writeJSONTo(w, http.StatusCreated, sc)
	case http.MethodGet:
		if sc := tr.streams[id]; sc != nil {
			writeJSONTo(w, http.StatusOK, sc)
			return
		}
		http.NotFound(w, r)
	case http.MethodDelete:
		if tr.streams[id] == nil {
			http.NotFound(w, r)
			return
		}
		delete(tr.streams, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (tr *transmitter) streamStatus(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if r.Method == http.MethodPost {
		var st signals.StreamStatus
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || tr.streams[st.StreamID] == nil {
			http.Error(w, "bad status request", http.StatusBadRequest)
			return
		}
		tr.status[st.StreamID] = st.Status
		writeJSONTo(w, http.StatusOK, st)
		return
	}
	id := r.URL.Query().Get("stream_id")
	if tr.streams[id] == nil {
		http.NotFound(w, r)
		return
	}
	writeJSONTo(w, http.StatusOK, signals.StreamStatus{StreamID: id, Status: tr.status[id]})
}

// verify answers 204, then delivers the verification event over the stream, as a transmitter's queue would.
func (tr *transmitter) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tr.mu.Lock()
	sc := tr.streams[req.StreamID]
	if sc != nil {
		tr.verifications++
	}
	tr.mu.Unlock()
	if sc == nil {
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	ev := tr.set(fmt.Sprintf("verify-%s-%d", req.StreamID, time.Now().UnixNano()),
		signals.SubjectID{Format: signals.FormatOpaque, ID: req.StreamID}, signals.EventVerification, map[string]any{"state": req.State})
	if sc.Delivery.Method == signals.DeliveryPoll {
		tr.enqueue(ev)
		return
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		// A push the receiver does not accept is only logged: a real transmitter would retry it.
		if code, err := deliver(sc.Delivery.EndpointURL, sc.Delivery.AuthorizationHeader, ev.token); code != http.StatusAccepted {
			tr.t.Logf("verification push: HTTP %d %v", code, err)
		}
	}()
}

// set signs a SET with one event.
func (tr *transmitter) set(jti string, sub signals.SubjectID, event string, fields map[string]any) queuedSET {
	return tr.setFor(ssfAudience, jti, sub, event, fields)
}

func (tr *transmitter) setFor(aud, jti string, sub signals.SubjectID, event string, fields map[string]any) queuedSET {
	tok, err := signals.Sign(tr.key, signals.SETClaims{Issuer: tr.issuer, Audience: []string{aud}, JTI: jti,
		Subject: sub, Events: map[string]map[string]any{event: fields}})
	if err != nil {
		tr.t.Error(err)
	}
	return queuedSET{jti, tok}
}

func agent(name string) signals.SubjectID {
	return signals.SubjectID{Format: signals.FormatURI, URI: "spiffe://example.org/agent/" + name}
}

// enqueue adds SETs for poll delivery, all at once so that one poll returns them together.
func (tr *transmitter) enqueue(sets ...queuedSET) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.queue = append(tr.queue, sets...)
	close(tr.arrived)
	tr.arrived = make(chan struct{})
}

// poll is the RFC 8936 server side: acknowledged and error-reported SETs leave the queue, the others are returned
// up to maxEvents; with returnImmediately false an empty queue holds the request up to 2s.
func (tr *transmitter) poll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ack               []string          `json:"ack"`
		SetErrs           map[string]setErr `json:"setErrs"`
		MaxEvents         int               `json:"maxEvents"`
		ReturnImmediately bool              `json:"returnImmediately"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tr.mu.Lock()
	tr.queue = slices.DeleteFunc(tr.queue, func(q queuedSET) bool {
		_, failed := req.SetErrs[q.jti]
		return failed || slices.Contains(req.Ack, q.jti)
	})
	// Recorded now: a long poll that carries acks may wait a while for SETs to return.
	tr.polls = append(tr.polls, pollRecord{acks: req.Ack, setErrs: req.SetErrs})
	rec := len(tr.polls) - 1
	empty, arrived := len(tr.queue) == 0, tr.arrived
	tr.mu.Unlock()
	if empty && !req.ReturnImmediately && req.MaxEvents > 0 {
		select {
		case <-arrived:
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sets := map[string]string{}
	for _, q := range tr.queue {
		if len(sets) == req.MaxEvents {
			break
		}
		sets[q.jti] = q.token
		tr.polls[rec].returned = append(tr.polls[rec].returned, q.jti)
	}
	writeJSONTo(w, http.StatusOK, map[string]any{"sets": sets, "moreAvailable": len(sets) < len(tr.queue)})
}

func (tr *transmitter) snapshot() (polls []pollRecord, streams []signals.StreamConfig, created, verifications, refused, queued int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, s := range tr.streams {
		streams = append(streams, *s)
	}
	return slices.Clone(tr.polls), streams, tr.created, tr.verifications, tr.refused, len(tr.queue)
}

// deliver POSTs a SET to an RFC 8935 endpoint and returns the status.
func deliver(endpoint, auth, token string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(token))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", signals.MediaTypeSET)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func push(t *testing.T, endpoint, auth, token string) int {
	t.Helper()
	code, err := deliver(endpoint, auth, token)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// ssfConfig is a controller config on loopback and a fresh data directory, with the given ssf block.
func ssfConfig(t *testing.T, ssf string) *Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := Parse([]byte(fmt.Sprintf(`trustDomain: example.org
dataDir: %s
issuer: {listen: 127.0.0.1:0}
xds: {listen: 127.0.0.1:0}
admin: {socket: %s}
ops: {listen: 127.0.0.1:0}
%s`, filepath.Join(dir, "data"), filepath.Join(dir, "admin.sock"), ssf)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runController starts a controller; stop ends Run and waits for it (also at cleanup).
func runController(t *testing.T, cfg *Config) (*Controller, func()) {
	t.Helper()
	c, err := New(context.Background(), cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return c, stop
}

// streamVerified reads agentauth_ssf_stream_verified for issuer from the ops endpoint's /metrics.
func streamVerified(t *testing.T, c *Controller, issuer string) string {
	resp, err := http.Get("http://" + c.opsLn.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("agentauth_ssf_stream_verified{issuer=%q} ", issuer)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return v
		}
	}
	return ""
}

// revokedBy returns the stored revocation caused by SET jti, if any.
func revokedBy(t *testing.T, c *Controller, jti string) (subject string, ok bool) {
	revs, err := c.store.Revocations().List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range revs {
		if r.GetCause().GetSetJti() == jti {
			return r.GetSubject().GetValue(), true
		}
	}
	return "", false
}

// waitFor polls cond until it holds. The timeout only stops a broken test from hanging; nothing is timed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSSFStreamWithPollDelivery: the controller creates a poll stream at the transmitter, polls it and verifies
// it; a polled SET becomes a stored revocation and is acknowledged in the next poll, a bad SET in the same batch
// is reported in setErrs and applies nothing; after a restart the same stream is found and verified again.
func TestSSFStreamWithPollDelivery(t *testing.T) {
	tr := newTransmitter(t)
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      poll: {maxEvents: 10}
      stream: {authorization: %q, delivery: poll, eventsRequested: [session-revoked, account-disabled]}
`, tr.issuer, ssfAudience, tr.issuer, mgmtToken))
	c, stop := runController(t, cfg)
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.issuer) == "1" })
	_, streams, created, verifications, _, _ := tr.snapshot()
	if created != 1 || verifications != 1 || len(streams) != 1 {
		t.Fatalf("created %d streams, %d verifications", created, verifications)
	}
	if s := streams[0]; s.Delivery.Method != signals.DeliveryPoll ||
		!slices.Equal(s.EventsRequested, []string{signals.EventSessionRevoked, signals.EventAccountDisabled}) {
		t.Fatalf("stream %+v", s)
	}

	good := tr.set("good", agent("a"), signals.EventSessionRevoked, nil)
	bad := tr.setFor("https://someone-else.example", "bad", agent("b"), signals.EventAccountDisabled, nil)
	tr.enqueue(good, bad)
	waitFor(t, "the revocation", func() bool { _, ok := revokedBy(t, c, "good"); return ok })
	var polls []pollRecord
	waitFor(t, "the acknowledgement", func() bool {
		var queued int
		polls, _, _, _, _, queued = tr.snapshot()
		return queued == 0
	})
	i := slices.IndexFunc(polls, func(p pollRecord) bool { return slices.Contains(p.returned, "good") })
	if i < 0 || i+1 >= len(polls) || !slices.Equal(polls[i].returned, []string{"good", "bad"}) {
		t.Fatalf("polls %+v", polls)
	}
	next := polls[i+1]
	if !slices.Equal(next.acks, []string{"good"}) || len(next.setErrs) != 1 || next.setErrs["bad"].Err != signals.CodeInvalidAudience {
		t.Fatalf("the poll after the batch carried acks %v, setErrs %v", next.acks, next.setErrs)
	}
	if sub, _ := revokedBy(t, c, "good"); sub != "spiffe://example.org/agent/a" {
		t.Fatalf("revoked %q", sub)
	}
	if _, ok := revokedBy(t, c, "bad"); ok {
		t.Fatal("the refused SET was applied")
	}

	// A restart finds the stream it created, and verifies it again.
	stop()
	c2, _ := runController(t, cfg)
	waitFor(t, "the stream to be verified after a restart", func() bool { return streamVerified(t, c2, tr.issuer) == "1" })
	if _, _, created, verifications, _, _ := tr.snapshot(); created != 1 || verifications != 2 {
		t.Fatalf("after a restart: created %d streams, %d verifications", created, verifications)
	}
}

// TestSSFStreamWithPushDeliveryTransmitterDown: a transmitter that is down at start delays nothing: push and
// another transmitter's polling work meanwhile, and the stream is created and verified over push once it is up.
func TestSSFStreamWithPushDeliveryTransmitterDown(t *testing.T) {
	tr := newTransmitter(t)
	tr.down.Store(true)
	tp := newTransmitter(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ssfAddr := ln.Addr().String()
	ln.Close()
	pushURL := "http://" + ssfAddr + "/ssf/events"
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: %s
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      pushAuthorization: Bearer push-secret
      stream: {authorization: %q, delivery: push, pushEndpoint: %s}
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      poll: {url: %s/poll, authorization: %q, interval: 1s}
`, ssfAddr, tr.issuer, ssfAudience, tr.issuer, mgmtToken, pushURL, tp.issuer, ssfAudience, tp.issuer, tp.issuer, mgmtToken))
	c, _ := runController(t, cfg)
	waitFor(t, "a refused discovery", func() bool { _, _, _, _, refused, _ := tr.snapshot(); return refused > 0 })

	if code := push(t, pushURL, "Bearer push-secret", tr.set("pushed", agent("c"), signals.EventAccountDisabled, nil).token); code != http.StatusAccepted {
		t.Fatalf("push while the stream is not set up: HTTP %d", code)
	}
	tp.enqueue(tp.set("polled", agent("d"), signals.EventSessionRevoked, nil))
	waitFor(t, "the polled SET applied and acknowledged", func() bool {
		_, _, _, _, _, queued := tp.snapshot()
		_, ok := revokedBy(t, c, "polled")
		return ok && queued == 0
	})
	if _, ok := revokedBy(t, c, "pushed"); !ok {
		t.Fatal("the pushed SET was not applied")
	}
	if v := streamVerified(t, c, tr.issuer); v != "0" {
		t.Fatalf("stream verified = %q before the transmitter was up", v)
	}

	tr.down.Store(false)
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.issuer) == "1" })
	_, streams, created, _, _, _ := tr.snapshot()
	if created != 1 {
		t.Fatalf("created %d streams", created)
	}
	if d := streams[0].Delivery; d.Method != signals.DeliveryPush || d.EndpointURL != pushURL || d.AuthorizationHeader != "Bearer push-secret" {
		t.Fatalf("delivery %+v", d)
	}
	if len(streams[0].EventsRequested) != len(signals.KnownEventTypes())-2 {
		t.Fatalf("default events requested: %v", streams[0].EventsRequested)
	}
}

// TestSSFStreamReplacedWhenConfigChanges: a remembered stream that no longer matches the configuration (here
// push became poll) is deleted and a new one created.
func TestSSFStreamReplacedWhenConfigChanges(t *testing.T) {
	tr := newTransmitter(t)
	block := func(stream string) string {
		return fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - {issuer: %s, audience: [%s], jwksURL: %s/jwks, stream: %s}
`, tr.issuer, ssfAudience, tr.issuer, stream)
	}
	cfg := ssfConfig(t, block(fmt.Sprintf(`{authorization: %q, delivery: push, pushEndpoint: "http://127.0.0.1:1/ssf/events"}`, mgmtToken)))
	c, stop := runController(t, cfg)
	waitFor(t, "the push stream", func() bool { _, _, created, _, _, _ := tr.snapshot(); return created == 1 })
	if v := streamVerified(t, c, tr.issuer); v != "0" {
		t.Fatalf("verified = %q though pushes cannot arrive", v)
	}
	stop()

	poll := ssfConfig(t, block(fmt.Sprintf(`{authorization: %q, delivery: poll}`, mgmtToken)))
	poll.DataDir = cfg.DataDir
	c2, _ := runController(t, poll)
	waitFor(t, "the poll stream to be verified", func() bool { return streamVerified(t, c2, tr.issuer) == "1" })
	_, streams, created, _, _, _ := tr.snapshot()
	if created != 2 || len(streams) != 1 || streams[0].StreamID != "stream-2" || streams[0].Delivery.Method != signals.DeliveryPoll {
		t.Fatalf("created %d, streams %+v", created, streams)
	}
}

func TestSSFConfigValidation(t *testing.T) {
	const base = "ssf:\n  listen: 127.0.0.1:8090\n  transmitters:\n    - {issuer: https://idp.example.com, audience: [a], jwksFile: f, "
	tests := []struct{ name, tail, want string }{
		{"poll with url", "poll: {url: https://idp.example.com/poll, interval: 10s, maxEvents: 50}}", ""},
		{"poll stream", "poll: {maxEvents: 5}, stream: {delivery: poll, eventsRequested: [session-revoked, " + signals.EventCredentialCompromise + "]}}", ""},
		{"push stream", "stream: {delivery: push, pushEndpoint: https://agentauth.example.org/ssf/events}}", ""},
		{"poll without url", "poll: {authorization: Bearer x}}", "poll.url"},
		{"poll url beside a poll stream", "poll: {url: https://idp.example.com/poll}, stream: {delivery: poll}}", "leave it out"},
		{"interval too short", "poll: {url: https://idp.example.com/poll, interval: 10ms}}", "poll.interval"},
		{"maxEvents negative", "poll: {url: https://idp.example.com/poll, maxEvents: -1}}", "poll.maxEvents"},
		{"unknown delivery", "stream: {delivery: webhook}}", "stream.delivery"},
		{"push without endpoint", "stream: {delivery: push}}", "stream.pushEndpoint"},
		{"push endpoint on a poll stream", "stream: {delivery: poll, pushEndpoint: https://a.example/ssf/events}}", "only for push"},
		{"unknown event", "stream: {delivery: poll, eventsRequested: [session-ended]}}", "session-ended"},
		{"unknown key", "stream: {delivery: poll, configurationURL: https://idp.example.com}}", "configurationURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(validConfig + base + tt.tail + "\n"))
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
