package signals

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestPollDeliveryWithAcks(t *testing.T) {
	clk := newClock()
	tt := newTestTransmitter(t, clk)
	recv, sink := newURLReceiver(t, tt)
	client, err := Discover(context.Background(), StreamClientConfig{Issuer: tt.issuer, Authorization: tt.token, HTTPClient: tt.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.CreateStream(context.Background(), StreamRequest{EventsRequested: supportedEvents()})
	if err != nil {
		t.Fatal(err)
	}
	if stream.Delivery.Method != DeliveryPoll {
		t.Fatalf("delivery %+v", stream.Delivery)
	}
	p, err := recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tt.token,
		ReturnImmediately: true, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	set := func(jti, event string, fields map[string]any) SETClaims {
		return SETClaims{Issuer: tt.issuer, Audience: []string{testAudience}, JTI: jti, IssuedAt: clk.Now(),
			Subject: SubjectID{Format: FormatURI, URI: "spiffe://example.org/agent/" + jti}, Events: map[string]map[string]any{event: fields}}
	}
	tt.send(stream.StreamID, set("a", EventSessionRevoked, nil))
	tt.enqueue("b", signRaw(t, newKey(t, "t1", jose.ES256), "secevent+jwt", map[string]any{"iss": tt.issuer})) // not the transmitter's key
	tt.send(stream.StreamID, set("c", EventRiskLevelChange, map[string]any{"principal": "USER", "current_level": "HIGH"}))

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
	acked, errs, queued := tt.snapshot()
	if !slices.Equal(acked, []string{"a", "c"}) || errs["b"].Err != CodeInvalidKey || queued != 0 {
		t.Fatalf("transmitter saw acks %v, errors %v, %d queued", acked, errs, queued)
	}

	// A redelivered SET is acknowledged again and applied once.
	tt.send(stream.StreamID, set("a", EventSessionRevoked, nil))
	if res, err = p.Poll(ctx); err != nil || res.Acked != 1 || len(sink.Calls()) != 2 {
		t.Fatalf("redelivery: %+v %v, %d applies", res, err, len(sink.Calls()))
	}

	// A failure on our side leaves the SET unacknowledged, so it comes again.
	sink.setErr(errors.New("store down"))
	tt.send(stream.StreamID, set("d", EventCredentialCompromise, map[string]any{"credential_type": "x509"}))
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
	small, _ := recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tt.token,
		ReturnImmediately: true, MaxEvents: 1})
	tt.send(stream.StreamID, set("e", EventSessionRevoked, nil))
	tt.send(stream.StreamID, set("f", EventSessionRevoked, nil))
	if res, err = small.Poll(ctx); err != nil || res.Received != 1 || res.Acked != 1 || !res.MoreAvailable {
		t.Fatalf("maxEvents 1: %+v %v", res, err)
	}
	if err := small.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if acked, _, queued := tt.snapshot(); !slices.Contains(acked, "e") || queued != 1 {
		t.Fatalf("flush: acked %v, %d queued", acked, queued)
	}
}

func TestPollerRun(t *testing.T) {
	clk := newClock()
	tt := newTestTransmitter(t, clk)
	recv, sink := newURLReceiver(t, tt)
	client, err := Discover(context.Background(), StreamClientConfig{Issuer: tt.issuer, Authorization: tt.token, HTTPClient: tt.srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := client.CreateStream(context.Background(), StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Long polling: the transmitter holds the request until a SET arrives.
	p, err := recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tt.token})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for i := range 3 {
		tt.send(stream.StreamID, SETClaims{Issuer: tt.issuer, Audience: []string{testAudience}, IssuedAt: clk.Now(),
			JTI:     string(rune('x' + i)),
			Subject: SubjectID{Format: FormatEmail, Email: "u@example.com"}, Events: map[string]map[string]any{EventSessionRevoked: nil}})
	}
	waitFor(t, "three SETs applied", func() bool { return len(sink.Calls()) == 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Acks sent with a long poll that Run then cancelled are sent again by the final flush; duplicates are harmless.
	waitFor(t, "acks flushed", func() bool {
		acked, _, queued := tt.snapshot()
		slices.Sort(acked)
		return slices.Equal(slices.Compact(acked), []string{"x", "y", "z"}) && queued == 0
	})
}

func TestPollerFailures(t *testing.T) {
	clk := newClock()
	tt := newTestTransmitter(t, clk)
	recv, _ := newURLReceiver(t, tt)
	ctx := context.Background()
	if _, err := recv.NewPoller(PollConfig{Issuer: "https://unknown.example.com", EndpointURL: tt.srv.URL + "/poll"}); err == nil {
		t.Error("poller for an unknown transmitter")
	}
	if _, err := recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: "http://transmitter.example.com/poll"}); err == nil {
		t.Error("plain http poll endpoint off loopback")
	}
	p, _ := recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: tt.srv.URL + "/poll", Authorization: "Bearer wrong", ReturnImmediately: true})
	if _, err := p.Poll(ctx); err == nil {
		t.Error("401 from the transmitter is not an error")
	}
	p, _ = recv.NewPoller(PollConfig{Issuer: tt.issuer, EndpointURL: tt.srv.URL + "/jwks", ReturnImmediately: true})
	if _, err := p.Poll(ctx); err == nil {
		t.Error("a non-poll endpoint answered with success")
	}
}
