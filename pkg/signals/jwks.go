package signals

import (
	"fmt"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
)

// JWKSCacheConfig tunes how transmitter key sets are cached (internal/jose.RemoteKeySet's policy). Zero fields
// take the defaults shown.
type JWKSCacheConfig struct {
	// MinRefresh is the least time between two fetches of a key set (30s): after a SET with an unknown kid, and
	// after a failed fetch, so neither a flood of made-up kids nor a down transmitter turns into a flood of
	// requests. It is also the shortest time a fetched set is kept, and the grace a held set gets while its
	// refresh fails.
	MinRefresh time.Duration
	// MaxAge is the longest a fetched set is kept (5m); a response's Cache-Control max-age is clamped to
	// [MinRefresh, MaxAge], and a response without one is kept for MaxAge.
	MaxAge time.Duration
}

func (c JWKSCacheConfig) keySetConfig() ijose.RemoteKeySetConfig {
	return ijose.RemoteKeySetConfig{MinRefresh: c.MinRefresh, MaxAge: c.MaxAge}
}

// CheckJWKSFile reads a transmitter's JWKS file as the receiver does, for a configuration check.
func CheckJWKSFile(path string) error {
	if _, err := ijose.ReadKeySetFile(path); err != nil {
		return fmt.Errorf("signals: %w", err)
	}
	return nil
}
