package xdsclient

import (
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/xds"
)

func TestBackoffIsBoundedFullJitter(t *testing.T) {
	c, err := NewClient(ClientConfig{Target: "127.0.0.1:1", TLSConfig: testTLS, BackoffBase: 100 * time.Millisecond, BackoffMax: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 80 {
		ceiling := min(3*time.Second, 100*time.Millisecond<<min(attempt, 30))
		var low, high bool
		for range 200 {
			d := c.backoff(attempt)
			if d < 0 || d > ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v]", attempt, d, ceiling)
			}
			low = low || d < ceiling/2
			high = high || d >= ceiling/2
		}
		if !low || !high {
			t.Errorf("attempt %d: 200 delays all in one half of [0, %v]: not jittered", attempt, ceiling)
		}
	}
}

func TestBackoffDoesNotOverflow(t *testing.T) {
	c, err := NewClient(ClientConfig{Target: "127.0.0.1:1", TLSConfig: testTLS, BackoffBase: time.Minute, BackoffMax: 1<<63 - 1})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := range 200 {
		if d := c.backoff(attempt); d < 0 {
			t.Fatalf("attempt %d: negative delay %v", attempt, d)
		}
	}
}

func TestNewClientRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]ClientConfig{
		"no target":    {TLSConfig: testTLS},
		"no TLS":       {Target: "127.0.0.1:1"},
		"unknown type": {Target: "127.0.0.1:1", TLSConfig: testTLS, Validators: map[string]xds.Validator{"type.googleapis.com/x.Y": nil}},
	} {
		if _, err := NewClient(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
