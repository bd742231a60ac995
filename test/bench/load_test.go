package bench

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
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 of 1..100", ms(hundred...), 100, 100 * time.Millisecond},
		{"tiny p", ms(1, 2, 3), 0.001, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (LatencyResult{Latencies: tt.lat}).Percentile(tt.p); got != tt.want {
				t.Fatalf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func newServer(t *testing.T) (Request, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	c := srv.Client()
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}, &hits
}

func TestFixedRateSendsExactlyRateTimesDuration(t *testing.T) {
	do, hits := newServer(t)
	res := FixedRate(context.Background(), do, 200, 100*time.Millisecond)
	if res.Sent != 20 || res.Failed != 0 || len(res.Latencies) != 20 || hits.Load() != 20 {
		t.Fatalf("sent %d failed %d latencies %d hits %d, want 20/0/20/20 (first error: %v)",
			res.Sent, res.Failed, len(res.Latencies), hits.Load(), res.FirstErr)
	}
	for i := 1; i < len(res.Latencies); i++ {
		if res.Latencies[i] < res.Latencies[i-1] {
			t.Fatal("latencies not sorted")
		}
	}
	if len(res.Lags) != res.Sent || !slices.IsSorted(res.Lags) || res.Lags[0] < 0 {
		t.Fatalf("lags %v: want %d, ascending, none negative", res.Lags, res.Sent)
	}
}

func TestPool(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	got := Pool(ms(1, 5, 9), nil, ms(2, 3), ms(10))
	if want := ms(1, 2, 3, 5, 9, 10); !slices.Equal(got, want) {
		t.Fatalf("Pool = %v, want %v", got, want)
	}
	// The p99 of two rounds of 100 pooled is the 3rd slowest of 200: one round's outlier (1000) does not decide it.
	a, b := make([]time.Duration, 100), make([]time.Duration, 100)
	for i := range 100 {
		a[i], b[i] = time.Duration(i+1), time.Duration(i+1)
	}
	b[99] = 1000
	if got := Percentile(Pool(a, b), 99); got != 99 {
		t.Fatalf("pooled p99 = %v, want 99", got)
	}
}

func TestFixedRateCountsFailures(t *testing.T) {
	boom := errors.New("boom")
	var calls atomic.Int64
	res := FixedRate(context.Background(), func(context.Context) error {
		if calls.Add(1)%2 == 0 {
			return boom
		}
		return nil
	}, 1000, 10*time.Millisecond)
	if res.Sent != 10 || res.Failed != 5 || len(res.Latencies) != 5 || !errors.Is(res.FirstErr, boom) {
		t.Fatalf("sent %d failed %d ok %d first %v", res.Sent, res.Failed, len(res.Latencies), res.FirstErr)
	}
}

func TestFixedRateStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := FixedRate(ctx, func(context.Context) error { return nil }, 10, time.Hour)
	if res.Sent > 1 {
		t.Fatalf("sent %d after cancellation", res.Sent)
	}
}

func TestClosedLoop(t *testing.T) {
	do, hits := newServer(t)
	res := ClosedLoop(context.Background(), do, 2, 50*time.Millisecond)
	if res.Done == 0 || res.Failed != 0 || int64(res.Done) != hits.Load() || res.PerSecond() <= 0 {
		t.Fatalf("done %d failed %d hits %d rate %v (first error %v)", res.Done, res.Failed, hits.Load(), res.PerSecond(), res.FirstErr)
	}
}
