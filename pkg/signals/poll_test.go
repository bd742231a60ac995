package signals

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/signals/signalstest"
)

func TestPollDeliveryWithAcks(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, sink := newURLReceiver(t, tr, clk)
	client := discover(context.Background(), t, tr)
	stream, err := client.CreateStream(context.Background(), StreamRequest{EventsRequested: supportedEvents()})
	if err != nil {
		t.Fatal(err)
	}
	if stream.Delivery.Method != DeliveryPoll {
		t.Fatalf("delivery %+v", stream.Delivery)
	}
	p, err := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tr.Authorization,
		ReturnImmediately: true, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	set := func(jti, event string, fields map[string]any) signalstest.SET {
		return signalstest.SET{JTI: jti, IssuedAt: clk.Now(), Subject: SubjectID{Format: FormatURI, URI: "spiffe://example.org/agent/" + jti},
			Events: map[string]map[string]any{event: fields}}
	}
	tr.Send(stream.StreamID, set("a", EventSessionRevoked, nil))
	forged := signRaw(t, newKey(t, "t1", jose.ES256), "secevent+jwt", map[string]any{"iss": tr.Issuer}) // not the transmitter's key
	tr.Enqueue(signalstest.Signed{JTI: "b", Token: forged})
	tr.Send(stream.StreamID, set("c", EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "HIGH"}))

	ctx := context.Background()
	res, err := p.Poll(ctx)
	if err != nil || res.Received != 3 || res.Acked != 2 || res.Refused != 1 || res.MoreAvailable {
		t.Fatalf("first poll: %+v %v", res, err)
	}
	if len(sink.Calls()) != 2 {
		t.Fatalf("%d applies", len(sink.Calls()))
	}
	// The next poll carries the acks and the error report; the transmitter drops those SETs.
	if res, err = p.Poll(ctx); err != nil || res.Received != 0 {
		t.Fatalf("second poll: %+v %v", res, err)
	}
	if acked, errs, queued := tr.Acked(), tr.SetErrs(), tr.Counts().Queued; !slices.Equal(acked, []string{"a", "c"}) || errs["b"].Err != CodeInvalidKey || queued != 0 {
		t.Fatalf("transmitter saw acks %v, errors %v, %d queued", acked, errs, queued)
	}

	// A redelivered SET is acknowledged again and applied once.
	tr.Send(stream.StreamID, set("a", EventSessionRevoked, nil))
	if res, err = p.Poll(ctx); err != nil || res.Acked != 1 || len(sink.Calls()) != 2 {
		t.Fatalf("redelivery: %+v %v, %d applies", res, err, len(sink.Calls()))
	}

	// A failure on our side leaves the SET unacknowledged, so it comes again.
	sink.setErr(errors.New("store down"))
	tr.Send(stream.StreamID, set("d", EventCredentialCompromise, map[string]any{"credential_type": "x509"}))
	if res, err = p.Poll(ctx); err == nil || res.Retry != 1 {
		t.Fatalf("failing sink: %+v %v", res, err)
	}
	sink.setErr(nil)
	if res, err = p.Poll(ctx); err != nil || res.Acked != 1 || len(sink.Calls()) != 3 {
		t.Fatalf("after recovery: %+v %v", res, err)
	}

	// moreAvailable when the transmitter holds more than maxEvents.
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	small, _ := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tr.Authorization,
		ReturnImmediately: true, MaxEvents: 1})
	tr.Send(stream.StreamID, set("e", EventSessionRevoked, nil))
	tr.Send(stream.StreamID, set("f", EventSessionRevoked, nil))
	if res, err = small.Poll(ctx); err != nil || res.Received != 1 || res.Acked != 1 || !res.MoreAvailable {
		t.Fatalf("maxEvents 1: %+v %v", res, err)
	}
	if err := small.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if acked, queued := tr.Acked(), tr.Counts().Queued; !slices.Contains(acked, "e") || queued != 1 {
		t.Fatalf("flush: acked %v, %d queued", acked, queued)
	}
}

func TestPollerRun(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, sink := newURLReceiver(t, tr, clk)
	stream, err := discover(context.Background(), t, tr).CreateStream(context.Background(), StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Long polling: the transmitter holds the request until a SET arrives.
	p, err := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tr.Authorization})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for i := range 3 {
		tr.Send(stream.StreamID, signalstest.SET{IssuedAt: clk.Now(), JTI: string(rune('x' + i)),
			Subject: SubjectID{Format: FormatEmail, Email: "u@example.com"}, Events: map[string]map[string]any{EventSessionRevoked: nil}})
	}
	waitFor(t, "three SETs applied", func() bool { return len(sink.Calls()) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Acks sent with a long poll that Run then cancelled are sent again by the final flush; duplicates are harmless.
	waitFor(t, "acks flushed", func() bool {
		acked := tr.Acked()
		slices.Sort(acked)
		return slices.Equal(slices.Compact(acked), []string{"x", "y", "z"}) && tr.Counts().Queued == 0
	})
}

func TestPollerFailures(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, _ := newURLReceiver(t, tr, clk)
	ctx := context.Background()
	if _, err := recv.NewPoller(PollConfig{Issuer: "https://unknown.example.com", EndpointURL: tr.URL + "/poll"}); err == nil {
		t.Error("poller for an unknown transmitter")
	}
	if _, err := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: "http://transmitter.example.com/poll"}); err == nil {
		t.Error("plain http poll endpoint off loopback")
	}
	p, _ := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: tr.URL + "/poll", Authorization: "Bearer wrong", ReturnImmediately: true})
	if _, err := p.Poll(ctx); err == nil {
		t.Error("401 from the transmitter is not an error")
	}
	p, _ = recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: tr.URL + "/jwks", ReturnImmediately: true})
	if _, err := p.Poll(ctx); err == nil {
		t.Error("a non-poll endpoint answered with success")
	}
}

// Before, the poller waited a second after every empty long-poll answer, so a SET that arrived meanwhile waited
// too; now it polls again at once after an empty answer the transmitter held, and paces only one that came back
// at once (a transmitter that does not hold requests).
func TestEmptyLongPollPollsAgainAtOnce(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, _ := newURLReceiver(t, tr, clk)
	var handler atomic.Pointer[http.HandlerFunc]
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*handler.Load())(w, r) }))
	t.Cleanup(empty.Close)
	for _, tt := range []struct {
		name     string
		minHold  time.Duration // an answer held shorter than this came back "at once"
		wantWait bool
	}{
		{"held", 0, false},
		{"answered at once", time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: empty.URL + "/poll", HTTPClient: &http.Client{}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var waits []time.Duration
			polls := 0
			p.minHold = tt.minHold
			p.sleep = func(_ context.Context, d time.Duration) bool {
				waits = append(waits, d)
				return true
			}
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if polls++; polls == 5 { // polls do not overlap
					cancel()
				}
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"sets":{},"moreAvailable":false}`)
			})
			handler.Store(&h)
			if err := p.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if tt.wantWait != (len(waits) > 0) {
				t.Fatalf("waits between empty long polls: %v", waits)
			}
			for _, d := range waits {
				if d > tt.minHold {
					t.Fatalf("waited %v, more than the pacing of %v", d, tt.minHold)
				}
			}
		})
	}
}
