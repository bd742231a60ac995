package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one call made by the load generator. It returns once the whole response has been read, so the
// connection can be reused.
type Request func(ctx context.Context) error

// LatencyResult is the outcome of a FixedRate run.
type LatencyResult struct {
	Sent, Failed int
	// FirstErr is the first failure, for the report.
	FirstErr error
	// Latencies of the successful requests, ascending.
	Latencies []time.Duration
	// Lags are how late each request was handed to do after its due time, ascending: the load generator's own
	// delay (timer wake-up, scheduling on its core), which the latencies do not include.
	Lags    []time.Duration
	Elapsed time.Duration
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of the latencies, or 0 when there are none.
func (r LatencyResult) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of sorted (ascending), or 0 when it is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(n))) - 1
	return sorted[min(max(i, 0), n-1)]
}

// Pool merges sets of latencies into one ascending set, so a percentile can be taken over all of them: the p99 of
// three 3,000-request phases pooled rests on the 90 slowest requests, where each phase's own rests on 30.
func Pool(sets ...[]time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range sets {
		out = append(out, s...)
	}
	slices.Sort(out)
	return out
}

// FixedRate sends rate requests per second for d, open loop: each request starts on its own schedule in its own
// goroutine, whether or not earlier ones have finished, so a slow response delays no later request and a stall of
// the system under test shows in the latency of every request due during it (no coordinated omission). Arrivals
// are evenly spaced, not Poisson. The schedule is absolute (request i is due at start + i/rate), so a late wake-up
// is caught up rather than lowering the rate. Latency runs from the moment a request is handed to do until do
// returns; how late that hand-off was after the due time is kept apart, in Lags.
func FixedRate(ctx context.Context, do Request, rate int, d time.Duration) LatencyResult {
	n := int(int64(rate) * int64(d) / int64(time.Second))
	if rate <= 0 || n <= 0 {
		return LatencyResult{}
	}
	interval := time.Second / time.Duration(rate)
	lat, lag := make([]time.Duration, n), make([]time.Duration, n)
	ok := make([]bool, n)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   atomic.Int64
	)
	start := time.Now()
	sent := 0
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			lag[i] = t0.Sub(due)
			if err := do(ctx); err != nil {
				failed.Add(1)
				errOnce.Do(func() { firstErr = err })
				return
			}
			lat[i], ok[i] = time.Since(t0), true
		}()
	}
	wg.Wait()
	res := LatencyResult{Sent: sent, Failed: int(failed.Load()), FirstErr: firstErr, Elapsed: time.Since(start)}
	res.Latencies = make([]time.Duration, 0, sent)
	for i := range sent {
		if ok[i] {
			res.Latencies = append(res.Latencies, lat[i])
		}
	}
	slices.Sort(res.Latencies)
	res.Lags = slices.Clone(lag[:sent])
	slices.Sort(res.Lags)
	return res
}

// ThroughputResult is the outcome of a ClosedLoop run.
type ThroughputResult struct {
	Done, Failed int
	FirstErr     error
	Elapsed      time.Duration
}

// PerSecond is the rate of successful requests.
func (r ThroughputResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Done) / r.Elapsed.Seconds()
}

// ClosedLoop runs workers goroutines that each send a request as soon as their previous one has finished, for d:
// the highest rate the system sustains with that many requests in flight.
func ClosedLoop(ctx context.Context, do Request, workers int, d time.Duration) ThroughputResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		done, failed atomic.Int64
		errOnce      sync.Once
		firstErr     error
		wg           sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if err := do(ctx); err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return ThroughputResult{Done: int(done.Load()), Failed: int(failed.Load()), FirstErr: firstErr, Elapsed: time.Since(start)}
}
