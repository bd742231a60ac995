package signals

import (
	"context"
	"encoding/json"
	"fmt"
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

// testTransmitter is a real SSF transmitter on 127.0.0.1 over TLS: discovery metadata, JWKS, stream management
// (create, read, delete, status, verification) and the RFC 8936 poll endpoint. Push streams get their SETs
// POSTed to the receiver's endpoint_url.
type testTransmitter struct {
	t      *testing.T
	srv    *httptest.Server
	issuer string
	token  string
	aud    string
	clock  *clock

	mu           sync.Mutex
	keys         []jose.JSONWebKey // keys[0] signs; the JWKS publishes all
	jwksHits     int
	jwksStatus   int
	cacheControl string
	streams      map[string]*StreamConfig
	status       map[string]string
	queue        []queuedSET
	arrived      chan struct{} // closed and replaced when a SET is queued
	acked        []string
	setErrs      map[string]setErrorBody
	pushStatus   []int
	wg           sync.WaitGroup
}

type queuedSET struct{ jti, token string }

func newTestTransmitter(t *testing.T, clk *clock) *testTransmitter {
	tt := &testTransmitter{t: t, token: "Bearer mgmt-token", aud: testAudience, clock: clk,
		keys: []jose.JSONWebKey{newKey(t, "t1", jose.ES256)}, jwksStatus: http.StatusOK, cacheControl: "max-age=3600",
		streams: map[string]*StreamConfig{}, status: map[string]string{}, setErrs: map[string]setErrorBody{},
		arrived: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/ssf-configuration/tenant1", tt.metadata)
	mux.HandleFunc("GET /jwks", tt.jwks)
	mux.HandleFunc("/stream", tt.authorized(tt.stream))
	mux.HandleFunc("/status", tt.authorized(tt.streamStatus))
	mux.HandleFunc("POST /verify", tt.authorized(tt.verify))
	mux.HandleFunc("POST /poll", tt.authorized(tt.poll))
	tt.srv = httptest.NewUnstartedServer(mux)
	tt.srv.StartTLS()
	tt.issuer = tt.srv.URL + "/tenant1"
	t.Cleanup(func() {
		tt.wg.Wait()
		tt.srv.Close()
	})
	return tt
}

func (tt *testTransmitter) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != tt.token {
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

func (tt *testTransmitter) metadata(w http.ResponseWriter, _ *http.Request) {
	base := tt.srv.URL
	writeJSON(w, http.StatusOK, TransmitterMetadata{
		SpecVersion: "1_0", Issuer: tt.issuer, JWKSURI: base + "/jwks",
		DeliveryMethodsSupported: []string{DeliveryPush, DeliveryPoll},
		ConfigurationEndpoint:    base + "/stream", StatusEndpoint: base + "/status", VerificationEndpoint: base + "/verify",
		AuthorizationSchemes: []AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6749"}},
	})
}

func (tt *testTransmitter) jwks(w http.ResponseWriter, _ *http.Request) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.jwksHits++
	if tt.jwksStatus != http.StatusOK {
		http.Error(w, "unavailable", tt.jwksStatus)
		return
	}
	w.Header().Set("Cache-Control", tt.cacheControl)
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(jwksOf(tt.t, tt.keys...))
}

func supportedEvents() []string {
	return []string{EventSessionRevoked, EventCredentialCompromise, EventRiskLevelChange}
}

func (tt *testTransmitter) stream(w http.ResponseWriter, r *http.Request) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	id := r.URL.Query().Get("stream_id")
	switch r.Method {
	case http.MethodPost:
		var req StreamRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id = fmt.Sprintf("stream-%d", len(tt.streams)+1)
		d := req.Delivery
		if d == nil {
			d = &Delivery{Method: DeliveryPoll, EndpointURL: tt.srv.URL + "/poll"}
		}
		sc := &StreamConfig{StreamID: id, Iss: tt.issuer, Aud: Audience{tt.aud}, Delivery: d, Description: req.Description,
			EventsSupported: supportedEvents(), EventsRequested: req.EventsRequested}
		for _, e := range req.EventsRequested {
			if slices.Contains(supportedEvents(), e) {
				sc.EventsDelivered = append(sc.EventsDelivered, e)
			}
		}
		tt.streams[id] = sc
		tt.status[id] = "enabled"
		writeJSON(w, http.StatusCreated, sc)
	case http.MethodGet:
		if sc := tt.streams[id]; sc != nil {
			writeJSON(w, http.StatusOK, sc)
			return
		}
		http.NotFound(w, r)
	case http.MethodDelete:
		if tt.streams[id] == nil {
			http.NotFound(w, r)
			return
		}
		delete(tt.streams, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (tt *testTransmitter) streamStatus(w http.ResponseWriter, r *http.Request) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if r.Method == http.MethodPost {
		var st StreamStatus
		if err := json.NewDecoder(r.Body).Decode(&st); err != nil || tt.streams[st.StreamID] == nil {
			http.Error(w, "bad status request", http.StatusBadRequest)
			return
		}
		tt.status[st.StreamID] = st.Status
		writeJSON(w, http.StatusOK, st)
		return
	}
	id := r.URL.Query().Get("stream_id")
	if tt.streams[id] == nil {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, StreamStatus{StreamID: id, Status: tt.status[id]})
}

func (tt *testTransmitter) verify(w http.ResponseWriter, r *http.Request) {
	var req struct {
		StreamID string `json:"stream_id"`
		State    string `json:"state"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tt.mu.Lock()
	sc := tt.streams[req.StreamID]
	tt.mu.Unlock()
	if sc == nil {
		http.NotFound(w, r)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	// Delivered after answering, as a real transmitter's queue would.
	tt.wg.Add(1)
	go func() {
		defer tt.wg.Done()
		tt.send(req.StreamID, tt.verificationSET(req.StreamID, req.State))
	}()
}

func (tt *testTransmitter) verificationSET(streamID, state string) SETClaims {
	fields := map[string]any{}
	if state != "" {
		fields["state"] = state
	}
	return SETClaims{Issuer: tt.issuer, Audience: []string{tt.aud}, IssuedAt: tt.clock.Now(),
		Subject: SubjectID{Format: FormatOpaque, ID: streamID}, Events: map[string]map[string]any{EventVerification: fields}}
}

// sign signs c with the current signing key.
func (tt *testTransmitter) sign(c SETClaims) string {
	tt.mu.Lock()
	key := tt.keys[0]
	tt.mu.Unlock()
	tok, err := Sign(key, c)
	if err != nil {
		tt.t.Error(err)
	}
	return tok
}

// send delivers a SET on a stream: pushed for push streams (returning the receiver's status), queued for poll.
func (tt *testTransmitter) send(streamID string, c SETClaims) int {
	tt.mu.Lock()
	sc := tt.streams[streamID]
	tt.mu.Unlock()
	if c.JTI == "" {
		c.JTI = fmt.Sprintf("%s-%d", streamID, time.Now().UnixNano())
	}
	tok := tt.sign(c)
	if sc.Delivery.Method == DeliveryPoll {
		tt.enqueue(c.JTI, tok)
		return 0
	}
	req, err := http.NewRequest(http.MethodPost, sc.Delivery.EndpointURL, strings.NewReader(tok))
	if err != nil {
		tt.t.Error(err)
		return 0
	}
	req.Header.Set("Content-Type", MediaTypeSET)
	req.Header.Set("Accept", "application/json")
	if sc.Delivery.AuthorizationHeader != "" {
		req.Header.Set("Authorization", sc.Delivery.AuthorizationHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tt.t.Error(err)
		return 0
	}
	resp.Body.Close()
	tt.mu.Lock()
	tt.pushStatus = append(tt.pushStatus, resp.StatusCode)
	tt.mu.Unlock()
	return resp.StatusCode
}

func (tt *testTransmitter) enqueue(jti, tok string) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.queue = append(tt.queue, queuedSET{jti, tok})
	close(tt.arrived)
	tt.arrived = make(chan struct{})
}

// poll is the RFC 8936 server side: acknowledged and error-reported SETs leave the queue; the rest are returned
// (again, if they were returned before) up to maxEvents; with returnImmediately false an empty queue holds the
// request up to 2s for a SET to arrive.
func (tt *testTransmitter) poll(w http.ResponseWriter, r *http.Request) {
	var req pollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	tt.mu.Lock()
	tt.acked = append(tt.acked, req.Ack...)
	for jti, e := range req.SetErrs {
		tt.setErrs[jti] = e
	}
	tt.queue = slices.DeleteFunc(tt.queue, func(q queuedSET) bool {
		_, failed := req.SetErrs[q.jti]
		return slices.Contains(req.Ack, q.jti) || failed
	})
	empty, arrived := len(tt.queue) == 0, tt.arrived
	tt.mu.Unlock()
	if empty && !req.ReturnImmediately && req.MaxEvents > 0 {
		select {
		case <-arrived:
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	resp := pollResponse{Sets: map[string]string{}}
	for i, q := range tt.queue {
		if i == req.MaxEvents {
			resp.MoreAvailable = true
			break
		}
		resp.Sets[q.jti] = q.token
	}
	writeJSON(w, http.StatusOK, resp)
}

func (tt *testTransmitter) snapshot() (acked []string, errs map[string]setErrorBody, queued int) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return slices.Clone(tt.acked), maps.Clone(tt.setErrs), len(tt.queue)
}

// newURLReceiver is a receiver that trusts tt (keys from its JWKS URL over TLS).
func newURLReceiver(t *testing.T, tt *testTransmitter, opts ...fixtureOpt) (*Receiver, *recordingSink) {
	t.Helper()
	f := newFixture(t, append([]fixtureOpt{func(c *ReceiverConfig) {
		c.Transmitters = []TransmitterConfig{{Issuer: tt.issuer, Audience: []string{testAudience}, JWKSURL: tt.srv.URL + "/jwks"}}
		c.HTTPClient = tt.srv.Client()
		c.Now = tt.clock.Now
	}}, opts...)...)
	return f.recv, f.sink
}

// waitFor polls cond until it holds or 10s pass (a guard against hangs, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		if !sleep(ctx, 5*time.Millisecond) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
