package memtrim

import (
	"context"
	"runtime/metrics"
	"time"
)

// ReleaseWhenIdle calls Release, and then done with its result, whenever a whole interval passed in which the
// program allocated less than idleBytes while its resident memory had grown by more than growth since the last
// release. Requests map the binary's request-path pages back and leave the heap near the collector's goal; once
// they are over, neither is needed until the next ones. It returns when ctx ends.
func ReleaseWhenIdle(ctx context.Context, interval time.Duration, idleBytes, growth uint64, done func(Stats, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	// Start-up has just released: what is resident now is the baseline.
	idle := idleTracker{last: allocated(), baseline: resident(), idleBytes: idleBytes, growth: growth}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if idle.release(allocated(), resident()) {
			st, err := Release()
			idle.baseline = resident()
			done(st, err)
		}
	}
}

// allocated is the heap bytes allocated since the program started.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// idleTracker decides, interval by interval, when to release.
type idleTracker struct {
	last      uint64 // bytes allocated at the end of the previous interval
	baseline  uint64 // resident bytes just after the last release
	idleBytes uint64
	growth    uint64
}

// release is called at the end of each interval with the bytes allocated so far and the resident bytes now, and
// says whether to release now.
func (t *idleTracker) release(allocated, resident uint64) bool {
	quiet := allocated-t.last < t.idleBytes
	t.last = allocated
	return quiet && resident > t.baseline+t.growth
}
