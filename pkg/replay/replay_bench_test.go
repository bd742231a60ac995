package replay

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkCheckParallel(b *testing.B) {
	c := New(Options{MaxEntries: 1 << 24})
	exp := time.Now().Add(time.Hour)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := c.Check("spiffe://example.org/agent\x00"+strconv.FormatInt(next.Add(1), 10), exp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
