package netlimit

import (
	"net"
	"net/http"
	"time"
)

// Config bounds one listener; the YAML keys are those of the controller's and the sidecar's limits sections.
type Config struct {
	// MaxConnections caps the listener's concurrent connections; more wait in the kernel's accept queue.
	MaxConnections int `yaml:"maxConnections,omitempty"`
	// MaxConnectionsPerIP caps the concurrent connections of one client (IPv4 address or IPv6 /64); more are
	// closed as soon as they are accepted.
	MaxConnectionsPerIP int `yaml:"maxConnectionsPerIP,omitempty"`
	// ReadHeaderTimeout bounds reading a request's headers (and the TLS handshake) on an HTTP listener.
	ReadHeaderTimeout time.Duration `yaml:"readHeaderTimeout,omitempty"`
	// ReadTimeout bounds reading a whole request, body included, on an HTTP listener.
	ReadTimeout time.Duration `yaml:"readTimeout,omitempty"`
	// IdleTimeout closes a keep-alive connection (a gRPC connection without calls) idle this long.
	IdleTimeout time.Duration `yaml:"idleTimeout,omitempty"`
}

// WithDefaults returns c with each unset (zero) field taken from d, the per-IP cap at most c's listener cap.
func (c Config) WithDefaults(d Config) Config {
	pickInt := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	pick := func(v, def time.Duration) time.Duration {
		if v == 0 {
			return def
		}
		return v
	}
	c.MaxConnections = pickInt(c.MaxConnections, d.MaxConnections)
	// A default per-IP cap never exceeds the listener's cap the operator chose.
	c.MaxConnectionsPerIP = pickInt(c.MaxConnectionsPerIP, min(d.MaxConnectionsPerIP, c.MaxConnections))
	c.ReadHeaderTimeout = pick(c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	c.ReadTimeout = pick(c.ReadTimeout, d.ReadTimeout)
	c.IdleTimeout = pick(c.IdleTimeout, d.IdleTimeout)
	return c
}

// Validate reports each field that is not positive, or a per-IP cap above the listener's, as a problem of
// prefix.<yaml key> through add.
func (c Config) Validate(prefix string, add func(field, format string, args ...any)) {
	for _, f := range []struct {
		key string
		v   int64
	}{
		{"maxConnections", int64(c.MaxConnections)}, {"maxConnectionsPerIP", int64(c.MaxConnectionsPerIP)},
		{"readHeaderTimeout", int64(c.ReadHeaderTimeout)}, {"readTimeout", int64(c.ReadTimeout)},
		{"idleTimeout", int64(c.IdleTimeout)},
	} {
		if f.v <= 0 {
			add(prefix+"."+f.key, "must be positive")
		}
	}
	if c.MaxConnectionsPerIP > c.MaxConnections && c.MaxConnections > 0 {
		add(prefix+".maxConnectionsPerIP", "%d is above %s.maxConnections (%d)", c.MaxConnectionsPerIP, prefix, c.MaxConnections)
	}
}

// Server returns an HTTP server for h with c's timeouts. Serve it on Listener's result.
func (c Config) Server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout,
		IdleTimeout: c.IdleTimeout}
}

// Listener wraps l with c's connection caps (NewListener).
func (c Config) Listener(l net.Listener) net.Listener {
	return NewListener(l, c.MaxConnections, c.MaxConnectionsPerIP)
}
