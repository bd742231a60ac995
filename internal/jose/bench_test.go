package jose

import (
	"context"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkRemoteKeySetHit: the lookup every verification makes once the set is held (no lock, no fetch).
func BenchmarkRemoteKeySetHit(b *testing.B) {
	_, a := p256Key(b, "a")
	srv := newJWKSServer(b, setJSON(b, a))
	r, err := NewRemoteKeySet(RemoteKeySetConfig{URL: srv.URL, Client: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := r.Keys(ctx, "a", jose.ES256); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if keys, err := r.Keys(ctx, "a", jose.ES256); err != nil || len(keys) != 1 {
				b.Fatal(keys, err)
			}
		}
	})
}
