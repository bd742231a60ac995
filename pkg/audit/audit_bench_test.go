package audit

import (
	"context"
	"testing"
)

// BenchmarkAppend measures a durable append in each durability mode, from as many goroutines as
// -cpu/GOMAXPROCS × SetParallelism give: group commit shares each fsync among the appends waiting for it.
func BenchmarkAppend(b *testing.B) {
	for _, d := range []Durability{Sync, Batched} {
		b.Run(string(d), func(b *testing.B) {
			s, _ := newKey(b)
			w := openWriter(b, Options{Dir: b.TempDir(), Signer: s, Durability: d})
			defer func() { _ = w.Close() }()
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := testRecord(0)
				for pb.Next() {
					if _, err := w.Append(context.Background(), r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
