package signalstest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The SSF and RFC values the transmitter uses. They are spelled out here rather than taken from package signals
// (see the package comment).
const (
	deliveryPush      = "urn:ietf:rfc:8935"
	deliveryPoll      = "urn:ietf:rfc:8936"
	eventVerification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	mediaTypeSET      = "application/secevent+jwt"
	// longPollWait is how long a poll with returnImmediately false waits on an empty queue.
	longPollWait = 2 * time.Second
)

// Options configures a Transmitter. The zero value is a plain-HTTP transmitter whose issuer is its base URL.
type Options struct {
	// TLS serves https with httptest's certificate, which Client trusts.
	TLS bool
	// IssuerPath is appended to the base URL to make the issuer (e.g. "/tenant1"); the metadata is then served at
	// /.well-known/ssf-configuration/tenant1 (SSF §7.2).
	IssuerPath string
	// Audience is the aud of every stream and the default aud of SETs (default "https://receiver.example").
	Audience string
	// Authorization is the Authorization header that stream management and polling require (default
	// "Bearer mgmt-token").
	Authorization string
	// EventsSupported are the event types streams offer; a stream delivers those of its requested events that are
	// supported. Nil delivers every requested event.
	EventsSupported []string
	// CacheControl is the JWKS response's Cache-Control header (default "max-age=3600").
	CacheControl string
	// Now is the clock for SETs' iat (default time.Now).
	Now func() time.Time
}

// Transmitter is an SSF transmitter on 127.0.0.1. Under URL it serves:
//
//	GET  /.well-known/ssf-configuration{IssuerPath}  metadata (SSF §7.1)
//	GET  /jwks                                        the public keys
//	     /streams                                     stream configuration: POST, GET and DELETE ?stream_id= (SSF §8.1.1)
//	     /status                                      stream status: GET ?stream_id=, POST (SSF §8.1.2)
//	POST /verify                                      verification (SSF §8.1.4): answers 204, then sends the event
//	POST /poll                                        RFC 8936 polling of the streams' queue
//
// Everything but the metadata and the JWKS requires Authorization. Its methods are safe for concurrent use.
type Transmitter struct {
	// URL is the base URL, http(s)://127.0.0.1:port; Issuer is URL plus Options.IssuerPath.
	URL, Issuer string
	// Audience and Authorization are the Options' values, with their defaults.
	Audience, Authorization string

	tb      testing.TB
	srv     *httptest.Server
	opts    Options
	ctx     context.Context // ends at cleanup: pushes stop and long polls return
	wg      sync.WaitGroup  // verification pushes in flight
	mu      sync.Mutex
	keys    []jose.JSONWebKey // keys[0] signs; the JWKS publishes all
	status  int               // of the JWKS endpoint
	down    bool
	streams map[string]*Stream
	queue   []Signed
	arrived chan struct{} // closed and replaced when SETs are queued
	polls   []Poll
	counts  Counts
	jtis    int
}

// Stream is a stream's configuration as the transmitter holds it, in its SSF JSON form.
type Stream struct {
	StreamID        string   `json:"stream_id"`
	Iss             string   `json:"iss"`
	Aud             []string `json:"aud"`
	EventsSupported []string `json:"events_supported,omitempty"`
	EventsRequested []string `json:"events_requested,omitempty"`
	EventsDelivered []string `json:"events_delivered,omitempty"`
	Delivery        Delivery `json:"delivery"`
	Description     string   `json:"description,omitempty"`
	// Status is enabled, paused or disabled (served by /status).
	Status string `json:"-"`
}

// Delivery is a stream's delivery method: push to the receiver's EndpointURL with AuthorizationHeader, or poll at
// the transmitter's /poll.
type Delivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

type streamStatus struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

// SET is a Security Event Token for the transmitter to sign; its iss is always the transmitter's.
type SET struct {
	// JTI defaults to one unique to this transmitter.
	JTI string
	// Audience defaults to the transmitter's Audience; one audience is sent as a string.
	Audience []string
	// IssuedAt defaults to Options.Now().
	IssuedAt time.Time
	// Subject is the sub_id claim: any value that marshals to an SSF subject identifier.
	Subject any
	// Events maps an event type URI to its members (nil for none).
	Events map[string]map[string]any
}

// Signed is a signed SET and its jti.
type Signed struct{ JTI, Token string }

// Poll is one poll request as the transmitter received it, and the jtis it answered with, in queue order.
type Poll struct {
	Acks     []string
	SetErrs  map[string]SetErr
	Returned []string
}

// SetErr is an error a receiver reported for a SET (RFC 8936 setErrs).
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// Counts are what the transmitter counted.
type Counts struct {
	// Created counts streams created; Verifications, verification events sent.
	Created, Verifications int
	// Refused counts metadata and management calls answered 503 while down.
	Refused int
	// JWKSFetches counts requests to /jwks.
	JWKSFetches int
	// Queued is how many SETs wait in the poll queue.
	Queued int
}

// New starts a Transmitter with a fresh ES256 signing key, kid "t1". It is closed when tb's test ends, after its
// pending verification pushes.
func New(tb testing.TB, opts Options) *Transmitter {
	tb.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Audience == "" {
		opts.Audience = "https://receiver.example"
	}
	if opts.Authorization == "" {
		opts.Authorization = "Bearer mgmt-token"
	}
	if opts.CacheControl == "" {
		opts.CacheControl = "max-age=3600"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := &Transmitter{Audience: opts.Audience, Authorization: opts.Authorization, tb: tb, opts: opts, ctx: ctx,
		keys:   []jose.JSONWebKey{{Key: priv, KeyID: "t1", Algorithm: string(jose.ES256), Use: "sig"}},
		status: http.StatusOK, streams: map[string]*Stream{}, arrived: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration"+opts.IssuerPath, tr.up(tr.metadata))
	mux.HandleFunc("GET /jwks", tr.jwks)
	mux.HandleFunc("/streams", tr.up(tr.authorized(tr.stream)))
	mux.HandleFunc("/status", tr.up(tr.authorized(tr.streamStatus)))
	mux.HandleFunc("POST /verify", tr.up(tr.authorized(tr.verify)))
	mux.HandleFunc("POST /poll", tr.authorized(tr.poll))
	tr.srv = httptest.NewUnstartedServer(mux)
	if opts.TLS {
		tr.srv.StartTLS()
	} else {
		tr.srv.Start()
	}
	tr.URL = tr.srv.URL
	tr.Issuer = tr.srv.URL + opts.IssuerPath
	tb.Cleanup(func() {
		cancel()
		tr.srv.Close()
		tr.wg.Wait()
	})
	return tr
}

// Client is an HTTP client that trusts the transmitter's certificate.
func (tr *Transmitter) Client() *http.Client { return tr.srv.Client() }

// Key is the private key that signs SETs now.
func (tr *Transmitter) Key() jose.JSONWebKey {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.keys[0]
}

// SetKeys rotates the keys: keys[0] (private, with its Algorithm set) signs from now on and the JWKS publishes all.
func (tr *Transmitter) SetKeys(keys ...jose.JSONWebKey) {
	if len(keys) == 0 {
		tr.tb.Fatal("signalstest: SetKeys needs a signing key")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.keys = slices.Clone(keys)
}

// SetJWKSStatus makes /jwks answer with status and no keys, or with the keys again when status is 200.
func (tr *Transmitter) SetJWKSStatus(status int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.status = status
}

// SetDown makes the metadata and management endpoints answer 503 (counted in Refused), as a transmitter that is not
// up yet; the JWKS and polling still work.
func (tr *Transmitter) SetDown(down bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.down = down
}

// Counts returns the counters and the queue length, as of one moment.
func (tr *Transmitter) Counts() Counts {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	c := tr.counts
	c.Queued = len(tr.queue)
	return c
}

// Streams returns copies of the streams that exist, oldest first.
func (tr *Transmitter) Streams() []Stream {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []Stream
	for i := 1; i <= tr.counts.Created; i++ {
		if s := tr.streams[streamID(i)]; s != nil {
			c := *s
			c.Aud = slices.Clone(s.Aud)
			c.EventsSupported = slices.Clone(s.EventsSupported)
			c.EventsRequested = slices.Clone(s.EventsRequested)
			c.EventsDelivered = slices.Clone(s.EventsDelivered)
			out = append(out, c)
		}
	}
	return out
}

// Polls returns every poll request received so far, oldest first.
func (tr *Transmitter) Polls() []Poll {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.polls)
}

// Acked returns every acknowledged jti, in the order the polls carried them (a jti acknowledged twice is there twice).
func (tr *Transmitter) Acked() []string {
	var acked []string
	for _, p := range tr.Polls() {
		acked = append(acked, p.Acks...)
	}
	return acked
}

// SetErrs returns every error reported for a SET, by jti.
func (tr *Transmitter) SetErrs() map[string]SetErr {
	errs := map[string]SetErr{}
	for _, p := range tr.Polls() {
		maps.Copy(errs, p.SetErrs)
	}
	return errs
}

// Sign signs s with the current key; a failure fails the test.
func (tr *Transmitter) Sign(s SET) Signed {
	tr.mu.Lock()
	key := tr.keys[0]
	if s.JTI == "" {
		tr.jtis++
		s.JTI = fmt.Sprintf("set-%d", tr.jtis)
	}
	tr.mu.Unlock()
	if s.Audience == nil {
		s.Audience = []string{tr.Audience}
	}
	if s.IssuedAt.IsZero() {
		s.IssuedAt = tr.opts.Now()
	}
	events := map[string]map[string]any{}
	for typ, members := range s.Events {
		events[typ] = members
		if members == nil {
			events[typ] = map[string]any{}
		}
	}
	claims := map[string]any{"iss": tr.Issuer, "jti": s.JTI, "iat": s.IssuedAt.Unix(), "events": events}
	if len(s.Audience) == 1 {
		claims["aud"] = s.Audience[0]
	} else {
		claims["aud"] = s.Audience
	}
	if s.Subject != nil {
		claims["sub_id"] = s.Subject
	}
	tok, err := sign(key, claims)
	if err != nil {
		tr.tb.Errorf("signalstest: signing SET %s: %v", s.JTI, err)
	}
	return Signed{JTI: s.JTI, Token: tok}
}

func sign(key jose.JSONWebKey, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// VerificationSET is the verification event the transmitter sends on a stream when asked to, with state (left
// out when empty, as in an unsolicited verification).
func (tr *Transmitter) VerificationSET(streamID, state string) SET {
	members := map[string]any{}
	if state != "" {
		members["state"] = state
	}
	return SET{Subject: map[string]string{"format": "opaque", "id": streamID},
		Events: map[string]map[string]any{eventVerification: members}}
}

// Send signs s and delivers it on a stream: pushed to a push stream's endpoint, returning the receiver's status,
// or queued for a poll stream, returning 0. An unknown stream or a push that gets no answer fails the test.
func (tr *Transmitter) Send(streamID string, s SET) int {
	tr.mu.Lock()
	st := tr.streams[streamID]
	tr.mu.Unlock()
	if st == nil {
		tr.tb.Errorf("signalstest: no stream %q", streamID)
		return 0
	}
	set := tr.Sign(s)
	if st.Delivery.Method == deliveryPoll {
		tr.Enqueue(set)
		return 0
	}
	code, err := Push(tr.ctx, st.Delivery.EndpointURL, st.Delivery.AuthorizationHeader, set.Token)
	if err != nil {
		tr.tb.Errorf("signalstest: push of %s: %v", set.JTI, err)
	}
	return code
}

// Enqueue adds SETs to the poll queue, all at once so that one poll can return them together.
func (tr *Transmitter) Enqueue(sets ...Signed) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.queue = append(tr.queue, sets...)
	close(tr.arrived)
	tr.arrived = make(chan struct{})
}

// Push POSTs a SET to an RFC 8935 push endpoint, with authorization as its Authorization header if not empty, and
// returns the HTTP status.
func Push(ctx context.Context, endpoint, authorization, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(token))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", mediaTypeSET)
	req.Header.Set("Accept", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func streamID(n int) string { return fmt.Sprintf("stream-%d", n) }

// up answers 503 while the transmitter is down.
func (tr *Transmitter) up(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		down := tr.down
		if down {
			tr.counts.Refused++
		}
		tr.mu.Unlock()
		if down {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		h(w, r)
	}
}

func (tr *Transmitter) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != tr.Authorization {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads r's JSON body into v, or answers 400 and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func (tr *Transmitter) metadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"spec_version": "1_0", "issuer": tr.Issuer, "jwks_uri": tr.URL + "/jwks",
		"delivery_methods_supported": []string{deliveryPush, deliveryPoll},
		"configuration_endpoint":     tr.URL + "/streams", "status_endpoint": tr.URL + "/status",
		"verification_endpoint": tr.URL + "/verify",
		"authorization_schemes": []map[string]string{{"spec_urn": "urn:ietf:rfc:6749"}},
	})
}

func (tr *Transmitter) jwks(w http.ResponseWriter, _ *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.counts.JWKSFetches++
	if tr.status != http.StatusOK {
		http.Error(w, "unavailable", tr.status)
		return
	}
	set := jose.JSONWebKeySet{}
	for _, k := range tr.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	w.Header().Set("Cache-Control", tr.opts.CacheControl)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

func (tr *Transmitter) stream(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	id := r.URL.Query().Get("stream_id")
	switch r.Method {
	case http.MethodPost:
		var req struct {
			Delivery        *Delivery `json:"delivery"`
			EventsRequested []string  `json:"events_requested"`
			Description     string    `json:"description"`
		}
		if !decode(w, r, &req) {
			return
		}
		tr.counts.Created++
		s := &Stream{StreamID: streamID(tr.counts.Created), Iss: tr.Issuer, Aud: []string{tr.Audience},
			EventsSupported: tr.opts.EventsSupported, EventsRequested: req.EventsRequested,
			Delivery: Delivery{Method: deliveryPoll, EndpointURL: tr.URL + "/poll"}, Description: req.Description,
			Status: "enabled"}
		if req.Delivery != nil {
			s.Delivery = *req.Delivery
		}
		for _, e := range req.EventsRequested {
			if tr.opts.EventsSupported == nil || slices.Contains(tr.opts.EventsSupported, e) {
				s.EventsDelivered = append(s.EventsDelivered, e)
			}
		}
		tr.streams[s.StreamID] = s
		writeJSON(w, http.StatusCreated, s)
	case http.MethodGet:
		if s := tr.streams[id]; s != nil {
			writeJSON(w, http.StatusOK, s)
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

func (tr *Transmitter) streamStatus(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if r.Method == http.MethodPost {
		var st streamStatus
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || tr.streams[st.StreamID] == nil {
			http.Error(w, "bad status request", http.StatusBadRequest)
			return
		}
		tr.streams[st.StreamID].Status = st.Status
		writeJSON(w, http.StatusOK, st)
		return
	}
	id := r.URL.Query().Get("stream_id")
	s := tr.streams[id]
	if s == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, streamStatus{StreamID: id, Status: s.Status})
}

// verify answers 204 and then sends the verification event over the stream, as a transmitter's queue would. A push
// the receiver does not accept is only logged: a real transmitter would retry it, and a test may point a stream at
// an endpoint that is not there.
func (tr *Transmitter) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if !decode(w, r, &req) {
		return
	}
	tr.mu.Lock()
	s := tr.streams[req.StreamID]
	if s != nil {
		tr.counts.Verifications++
	}
	tr.mu.Unlock()
	if s == nil {
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	set := tr.Sign(tr.VerificationSET(req.StreamID, req.State))
	if s.Delivery.Method == deliveryPoll {
		tr.Enqueue(set)
		return
	}
	tr.wg.Add(1)
	go func() {
		defer tr.wg.Done()
		if code, err := Push(tr.ctx, s.Delivery.EndpointURL, s.Delivery.AuthorizationHeader, set.Token); code != http.StatusAccepted {
			tr.tb.Logf("signalstest: verification push to %s: HTTP %d %v", s.Delivery.EndpointURL, code, err)
		}
	}()
}

// poll is the RFC 8936 server side: acknowledged and error-reported SETs leave the queue; the others are returned
// (again, if they were before) up to maxEvents; with returnImmediately false an empty queue holds the request until
// a SET arrives or longPollWait passes.
func (tr *Transmitter) poll(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ack               []string          `json:"ack"`
		SetErrs           map[string]SetErr `json:"setErrs"`
		MaxEvents         int               `json:"maxEvents"`
		ReturnImmediately bool              `json:"returnImmediately"`
	}
	if !decode(w, r, &req) {
		return
	}
	tr.mu.Lock()
	tr.queue = slices.DeleteFunc(tr.queue, func(s Signed) bool {
		_, failed := req.SetErrs[s.JTI]
		return failed || slices.Contains(req.Ack, s.JTI)
	})
	// Recorded now: a long poll that carries acks may wait a while before it returns SETs.
	tr.polls = append(tr.polls, Poll{Acks: req.Ack, SetErrs: req.SetErrs})
	rec := len(tr.polls) - 1
	empty, arrived := len(tr.queue) == 0, tr.arrived
	tr.mu.Unlock()
	if empty && !req.ReturnImmediately && req.MaxEvents > 0 {
		t := time.NewTimer(longPollWait)
		defer t.Stop()
		select {
		case <-arrived:
		case <-t.C:
		case <-r.Context().Done():
		case <-tr.ctx.Done():
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sets := map[string]string{}
	var returned []string
	for _, s := range tr.queue {
		if len(sets) == req.MaxEvents {
			break
		}
		sets[s.JTI] = s.Token
		returned = append(returned, s.JTI)
	}
	tr.polls[rec].Returned = returned
	writeJSON(w, http.StatusOK, map[string]any{"sets": sets, "moreAvailable": len(sets) < len(tr.queue)})
}
