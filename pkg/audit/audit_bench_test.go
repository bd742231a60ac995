package audit

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAppend measures a durable append in each durability mode, from 1, 8 or 16 goroutines per -cpu/GOMAXPROCS
// (the sidecar runs at GOMAXPROCS 1 in the pair benchmark, with 8 connections): group commit shares each write (and
// fsync) among the appends waiting for it, and a lone appender pays for one per record.
func BenchmarkAppend(b *testing.B) {
	for _, d := range []Durability{Sync, Batched} {
		for _, par := range []int{1, 8, 16} {
			b.Run(fmt.Sprintf("%s/par=%d", d, par), func(b *testing.B) { benchmarkAppend(b, d, par) })
		}
	}
}

func benchmarkAppend(b *testing.B, d Durability, par int) {
	s, _ := newKey(b)
	w := openWriter(b, Options{Dir: b.TempDir(), Signer: s, Durability: d})
	defer func() { _ = w.Close() }()
	b.SetParallelism(par)
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
	b.StopTimer() // Close's last fsync and checkpoint are not appends
}
