package replay

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/agentauth/agentauth/pkg/autherr"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func TestCheck(t *testing.T) {
	clk := newClock()
	c := New(Options{Now: clk.Now})
	exp := clk.Now().Add(time.Minute)

	steps := []struct {
		name    string
		advance time.Duration
		id      string
		exp     time.Time
		want    error
	}{
		{"first use", 0, "a", exp, nil},
		{"replay", 0, "a", exp, autherr.ErrReplay},
		{"other id", 0, "b", exp, nil},
		{"replay just before expiry", time.Minute - time.Nanosecond, "a", exp, autherr.ErrReplay},
		{"reuse at expiry", time.Nanosecond, "a", exp.Add(time.Minute), nil},
		{"replay of re-recorded id", 30 * time.Second, "a", exp, autherr.ErrReplay},
		{"already expired is not recorded", 0, "c", exp, nil},
		{"so it is accepted again", 0, "c", exp, nil},
	}
	for _, st := range steps {
		clk.Advance(st.advance)
		err := c.Check(st.id, st.exp)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Fatalf("%s: Check(%q) = %v, want %v", st.name, st.id, err, st.want)
		}
	}
}

func TestConcurrentSameID(t *testing.T) {
	c := New(Options{})
	exp := time.Now().Add(time.Hour)
	const n = 200
	var ok, replays atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch err := c.Check("same", exp); {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, autherr.ErrReplay):
				replays.Add(1)
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || replays.Load() != n-1 {
		t.Fatalf("successes = %d, replays = %d; want 1 and %d", ok.Load(), replays.Load(), n-1)
	}
}

func TestConcurrentMixed(t *testing.T) {
	clk := newClock()
	c := New(Options{Now: clk.Now, MaxEntries: 100000})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				id := fmt.Sprintf("g%d-%d", g, i)
				if err := c.Check(id, clk.Now().Add(10*time.Second)); err != nil {
					t.Errorf("Check(%s) = %v", id, err)
					return
				}
				if err := c.Check(id, clk.Now().Add(10*time.Second)); !errors.Is(err, autherr.ErrReplay) {
					t.Errorf("second Check(%s) = %v, want replay", id, err)
					return
				}
				if i%500 == 0 {
					clk.Advance(200 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	clk.Advance(20 * time.Second)
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after everything expired = %d, want 0", n)
	}
}

func TestExpirySweep(t *testing.T) {
	clk := newClock()
	c := New(Options{Now: clk.Now})
	for i := range 1000 {
		if err := c.Check(fmt.Sprint(i), clk.Now().Add(time.Duration(1+i%10)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Len(); n != 1000 {
		t.Fatalf("Len = %d, want 1000", n)
	}
	clk.Advance(5*time.Second + time.Nanosecond)
	// Entries expiring at +1s..+5s are gone, those at +6s.. are still held.
	if n := c.Len(); n != 500 {
		t.Fatalf("Len after 5s = %d, want 500", n)
	}
	clk.Advance(10 * time.Second)
	if n := c.Len(); n != 0 {
		t.Fatalf("Len after 15s = %d, want 0", n)
	}
	for i := range c.shards {
		s := &c.shards[i]
		if len(s.entries) != 0 || len(s.members) != 0 || len(s.buckets) != 0 {
			t.Fatalf("shard %d not empty: %d entries, %d buckets", i, len(s.entries), len(s.buckets))
		}
	}
}

func TestBoundFailsClosed(t *testing.T) {
	clk := newClock()
	c := New(Options{Now: clk.Now, MaxEntries: 10})
	for i := range 10 {
		if err := c.Check(fmt.Sprint(i), clk.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Check("new", clk.Now().Add(time.Minute)); !errors.Is(err, autherr.ErrTooLarge) {
		t.Fatalf("Check on full cache = %v, want too_large", err)
	}
	// A replay is still reported as a replay, not as "full".
	if err := c.Check("3", clk.Now().Add(time.Minute)); !errors.Is(err, autherr.ErrReplay) {
		t.Fatalf("replay on full cache = %v, want replay", err)
	}
	// Once entries expire (in whichever shard), room is made again.
	clk.Advance(time.Minute + bucketDuration)
	if err := c.Check("new", clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("Check after expiry = %v", err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
}

func TestBoundConcurrent(t *testing.T) {
	c := New(Options{MaxEntries: 50})
	exp := time.Now().Add(time.Hour)
	var ok atomic.Int32
	var wg sync.WaitGroup
	for g := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				err := c.Check(fmt.Sprintf("%d-%d", g, i), exp)
				switch {
				case err == nil:
					ok.Add(1)
				case !errors.Is(err, autherr.ErrTooLarge):
					t.Errorf("unexpected %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 50 || c.Len() != 50 {
		t.Fatalf("accepted %d, Len %d; want exactly 50", ok.Load(), c.Len())
	}
}

// TestIdentifierNotRetained: the cache keeps a hash of an identifier, not the identifier, so a busy receiver's
// cache adds nothing for the garbage collector to scan, and the caller's string is free once Check returns.
func TestIdentifierNotRetained(t *testing.T) {
	c := New(Options{})
	id := string([]byte("spiffe://example.org/agent/planner\x00nonce-0123456789abcdef")) // its own allocation
	freed := make(chan struct{})
	runtime.AddCleanup(unsafe.StringData(id), func(ch chan struct{}) { close(ch) }, freed)
	if err := c.Check(id, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	id = ""
	deadline := time.Now().Add(time.Minute)
	for {
		runtime.GC()
		select {
		case <-freed:
			// Still recorded, under its hash.
			again := "spiffe://example.org/agent/planner\x00nonce-0123456789abcdef"
			if err := c.Check(again, time.Now().Add(time.Hour)); !errors.Is(err, autherr.ErrReplay) {
				t.Fatalf("the identifier is no longer held: %v", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the cache keeps the identifier alive")
		}
	}
}
