package netlimit

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// RateConfig is a per-client request rate: a token bucket of Burst requests refilled at RequestsPerSecond.
type RateConfig struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond,omitempty"`
	Burst             int     `yaml:"burst,omitempty"`
}

// WithDefaults returns r with each unset (zero) field taken from d.
func (r RateConfig) WithDefaults(d RateConfig) RateConfig {
	if r.RequestsPerSecond == 0 {
		r.RequestsPerSecond = d.RequestsPerSecond
	}
	if r.Burst == 0 {
		r.Burst = d.Burst
	}
	return r
}

// Validate reports fields that are not positive as problems of prefix.<yaml key> through add.
func (r RateConfig) Validate(prefix string, add func(field, format string, args ...any)) {
	if r.RequestsPerSecond <= 0 {
		add(prefix+".requestsPerSecond", "must be positive")
	}
	if r.Burst <= 0 {
		add(prefix+".burst", "must be positive")
	}
}

// maxTracked bounds the clients a RateLimiter remembers. Past it, clients it has not seen share one bucket:
// a flood from many addresses then throttles new clients, but never grows the map.
const maxTracked = 16384

// RateLimiter limits requests per client (ClientKey of the remote address).
type RateLimiter struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	clients  map[netip.Prefix]*rate.Limiter
	overflow *rate.Limiter
}

// NewRateLimiter returns a limiter of r per client.
func NewRateLimiter(r RateConfig) *RateLimiter {
	return &RateLimiter{limit: rate.Limit(r.RequestsPerSecond), burst: r.Burst,
		clients: map[netip.Prefix]*rate.Limiter{}, overflow: rate.NewLimiter(rate.Limit(r.RequestsPerSecond), r.Burst)}
}

// Allow reports whether the client at remote (host:port, as in http.Request.RemoteAddr or a net.Addr's String)
// may make a request now. Addresses without an IP (Unix sockets) are not limited.
func (l *RateLimiter) Allow(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return true
	}
	key, ok := ClientKey(net.TCPAddrFromAddrPort(ap))
	if !ok {
		return true
	}
	return l.limiter(key).Allow()
}

func (l *RateLimiter) limiter(key netip.Prefix) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim, ok := l.clients[key]; ok {
		return lim
	}
	if len(l.clients) >= maxTracked {
		l.sweep()
		if len(l.clients) >= maxTracked {
			return l.overflow
		}
	}
	lim := rate.NewLimiter(l.limit, l.burst)
	l.clients[key] = lim
	return lim
}

// sweep forgets clients whose bucket is full again: a new bucket would be the same. Called with mu held.
func (l *RateLimiter) sweep() {
	now := time.Now()
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// RetryAfter is the whole seconds a refused client is told to wait (at least 1).
func (l *RateLimiter) RetryAfter() int {
	if l.limit <= 0 {
		return 1
	}
	return max(1, int(1/float64(l.limit)+0.999))
}

// Handler refuses requests over the rate with 429, a Retry-After header and the JSON error body every refusal
// has (reason autherr.ErrRateLimited), before next sees them.
func (l *RateLimiter) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.Allow(r.RemoteAddr) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", strconv.Itoa(l.RetryAfter()))
		w.WriteHeader(http.StatusTooManyRequests)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": autherr.ErrRateLimited.Code(),
			"error_description": "too many requests from this client; retry later"})
	})
}
