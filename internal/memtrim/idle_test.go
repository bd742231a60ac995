package memtrim

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestIdleTracker(t *testing.T) {
	const mib = 1 << 20
	tr := idleTracker{last: 100, baseline: 10 * mib, idleBytes: mib, growth: 2 * mib}
	total := uint64(100)
	for i, s := range []struct {
		alloc, resident uint64 // allocated during the interval, resident at its end
		wantRelease     bool
	}{
		{0, 10 * mib, false},        // idle after start-up, which released already
		{5 * mib, 20 * mib, false},  // busy
		{mib, 20 * mib, false},      // still busy (at the threshold)
		{1 << 10, 20 * mib, true},   // fell idle, and grew
		{0, 11 * mib, false},        // idle, grew by less than growth
		{1 << 10, 12*mib + 1, true}, // a few light requests mapped pages back: more than growth
	} {
		if i == 5 {
			tr.baseline = 10 * mib
		}
		total += s.alloc
		if got := tr.release(total, s.resident); got != s.wantRelease {
			t.Fatalf("interval %d: release %v, want %v", i, got, s.wantRelease)
		}
	}
}

// TestReleaseWhenIdle: grow, go quiet, and the release comes; ending ctx stops it.
func TestReleaseWhenIdle(t *testing.T) {
	if resident() == 0 {
		t.Skip("resident memory is not known on this system")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 16)
	exited := make(chan struct{})
	go func() {
		ReleaseWhenIdle(ctx, 20*time.Millisecond, 1<<20, 1<<20, func(_ Stats, err error) { done <- err })
		close(exited)
	}()
	// Touch 32 MiB, garbage once touched: resident grows, and the release gives it back.
	for range 32 {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = 1
		}
		runtime.KeepAlive(b)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("no release after the program fell idle")
	}
	cancel()
	<-exited
}
