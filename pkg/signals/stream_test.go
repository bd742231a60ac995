package signals

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/signals/signalstest"
)

func TestStreamManagementAndVerification(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, sink := newURLReceiver(t, tr, clk, func(c *ReceiverConfig) { c.Transmitters[0].PushAuthorization = "Bearer push-secret" })
	push := httptest.NewServer(recv)
	t.Cleanup(push.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	client := discover(ctx, t, tr)
	if md := client.Metadata(); md.Issuer != tr.Issuer || !slices.Contains(md.DeliveryMethodsSupported, DeliveryPush) {
		t.Fatalf("metadata %+v", md)
	}
	stream, err := client.CreateStream(ctx, StreamRequest{
		Delivery:        &Delivery{Method: DeliveryPush, EndpointURL: push.URL + "/ssf/push", AuthorizationHeader: "Bearer push-secret"},
		EventsRequested: []string{EventSessionRevoked, EventAccountDisabled},
		Description:     "agentauth controller",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stream.EventsDelivered, []string{EventSessionRevoked}) || !slices.Equal(stream.Aud, []string{testAudience}) {
		t.Fatalf("stream %+v", stream)
	}
	if got, err := client.Stream(ctx, stream.StreamID); err != nil || got.StreamID != stream.StreamID {
		t.Fatalf("read stream: %+v %v", got, err)
	}
	if st, err := client.Status(ctx, stream.StreamID); err != nil || st.Status != "enabled" {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st, err := client.SetStatus(ctx, StreamStatus{StreamID: stream.StreamID, Status: "paused", Reason: "maintenance"}); err != nil || st.Status != "paused" {
		t.Fatalf("set status: %+v %v", st, err)
	}

	// Verification round trip over push.
	if err := recv.Verify(ctx, client, stream.StreamID); err != nil {
		t.Fatal(err)
	}
	// A verification event whose state is not the one we asked for is refused with invalid_state.
	_, stop := recv.expectVerification(tr.Issuer, stream.StreamID, "expected-state")
	if code := tr.Send(stream.StreamID, tr.VerificationSET(stream.StreamID, "forged-state")); code != http.StatusBadRequest {
		t.Fatalf("wrong state: %d", code)
	}
	stop()
	// A verification the transmitter sends on its own (no state) is accepted.
	if code := tr.Send(stream.StreamID, tr.VerificationSET(stream.StreamID, "")); code != http.StatusAccepted {
		t.Fatalf("unsolicited verification: %d", code)
	}
	// A stream-updated event is accepted and logged.
	updated := tr.VerificationSET(stream.StreamID, "")
	updated.Events = map[string]map[string]any{EventStreamUpdated: {"status": "disabled", "reason": "too many errors"}}
	if code := tr.Send(stream.StreamID, updated); code != http.StatusAccepted {
		t.Fatalf("stream-updated: %d", code)
	}
	// A real event over the stream reaches the sink; control events never did.
	ev := signalstest.SET{IssuedAt: clk.Now(), Subject: SubjectID{Format: FormatURI, URI: "spiffe://example.org/agent/a"},
		Events: map[string]map[string]any{EventSessionRevoked: nil}}
	if code := tr.Send(stream.StreamID, ev); code != http.StatusAccepted || len(sink.Calls()) != 1 {
		t.Fatalf("event: %d, %d applies", code, len(sink.Calls()))
	}

	if err := client.DeleteStream(ctx, stream.StreamID); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Status(ctx, stream.StreamID); err == nil {
		t.Fatal("status of a deleted stream")
	}
	if err := client.RequestVerification(ctx, stream.StreamID, "x"); err == nil {
		t.Fatal("verification of a deleted stream")
	}
}

func TestVerifyOverPoll(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, _ := newURLReceiver(t, tr, clk)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := discover(ctx, t, tr)
	stream, err := client.CreateStream(ctx, StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := recv.NewPoller(PollConfig{Issuer: tr.Issuer, EndpointURL: stream.Delivery.EndpointURL, Authorization: tr.Authorization})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	if err := recv.Verify(ctx, client, stream.StreamID); err != nil {
		t.Fatal(err)
	}
	stopRun()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDiscoverFailures(t *testing.T) {
	tr := newTransmitter(t, newClock())
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  StreamClientConfig
	}{
		{"issuer path with no metadata", StreamClientConfig{Issuer: tr.URL + "/tenant2", HTTPClient: tr.Client()}},
		{"metadata names another issuer", StreamClientConfig{Issuer: tr.URL + "/tenant1/", HTTPClient: tr.Client()}},
		{"plain http off loopback", StreamClientConfig{Issuer: "http://transmitter.example.com"}},
		{"issuer with a query", StreamClientConfig{Issuer: tr.URL + "/tenant1?x=1", HTTPClient: tr.Client()}},
		{"untrusted TLS", StreamClientConfig{Issuer: tr.Issuer}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Discover(ctx, tc.cfg); err == nil {
				t.Fatal("discovered")
			}
		})
	}
	// Management calls without the right bearer token fail with the transmitter's 401.
	client, err := Discover(ctx, StreamClientConfig{Issuer: tr.Issuer, Authorization: "Bearer wrong", HTTPClient: tr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateStream(ctx, StreamRequest{}); err == nil {
		t.Fatal("created a stream without authorization")
	}
}

func TestMetadataURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://tr.example.com":          "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/":         "https://tr.example.com/.well-known/ssf-configuration",
		"https://tr.example.com/issuer1":  "https://tr.example.com/.well-known/ssf-configuration/issuer1",
		"https://tr.example.com/issuer1/": "https://tr.example.com/.well-known/ssf-configuration/issuer1",
		"http://127.0.0.1:8443/a/b":       "http://127.0.0.1:8443/.well-known/ssf-configuration/a/b",
	} {
		if got, err := metadataURL(in); err != nil || got != want {
			t.Errorf("metadataURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestVerifyTimesOut(t *testing.T) {
	clk := newClock()
	tr := newTransmitter(t, clk)
	recv, _ := newURLReceiver(t, tr, clk)
	ctx := context.Background()
	client := discover(ctx, t, tr)
	stream, err := client.CreateStream(ctx, StreamRequest{}) // poll stream nobody polls
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := recv.Verify(short, client, stream.StreamID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify: %v", err)
	}
}
