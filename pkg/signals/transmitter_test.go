package signals

import (
	"context"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/signals/signalstest"
)

// newTransmitter is a signalstest transmitter as these tests use it: over TLS, with the issuer /tenant1 under
// its URL, streams for testAudience that support supportedEvents, and SETs issued at clk's time.
func newTransmitter(t *testing.T, clk *clock, opts ...func(*signalstest.Options)) *signalstest.Transmitter {
	t.Helper()
	o := signalstest.Options{TLS: true, IssuerPath: "/tenant1", Audience: testAudience, EventsSupported: supportedEvents(),
		Now: clk.Now}
	for _, f := range opts {
		f(&o)
	}
	return signalstest.New(t, o)
}

func supportedEvents() []string {
	return []string{EventSessionRevoked, EventCredentialCompromise, EventRiskLevelChange}
}

// newURLReceiver is a receiver that trusts tr (keys from its JWKS URL over TLS).
func newURLReceiver(t *testing.T, tr *signalstest.Transmitter, clk *clock, opts ...fixtureOpt) (*Receiver, *recordingSink) {
	t.Helper()
	f := newFixture(t, append([]fixtureOpt{func(c *ReceiverConfig) {
		c.Transmitters = []TransmitterConfig{{Issuer: tr.Issuer, Audience: []string{testAudience}, JWKSURL: tr.URL + "/jwks"}}
		c.HTTPClient = tr.Client()
		c.Now = clk.Now
	}}, opts...)...)
	return f.recv, f.sink
}

// discover is a StreamClient for tr with its management authorization.
func discover(ctx context.Context, t *testing.T, tr *signalstest.Transmitter) *StreamClient {
	t.Helper()
	client, err := Discover(ctx, StreamClientConfig{Issuer: tr.Issuer, Authorization: tr.Authorization, HTTPClient: tr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return client
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
