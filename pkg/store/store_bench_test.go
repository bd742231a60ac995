package store

import (
	"fmt"
	"testing"
)

// BenchmarkPutRevocation is the cost of one durable revocation write (one fsync'd bbolt transaction).
func BenchmarkPutRevocation(b *testing.B) {
	s, err := Open(b.TempDir()+"/bench.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	i := 0
	for b.Loop() {
		id := fmt.Sprintf("r%d", i)
		i++
		if _, err := s.Revocations().Put(revocation(id, "spiffe://example.org/"+id)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetRevocation is a read transaction plus proto decode.
func BenchmarkGetRevocation(b *testing.B) {
	s, err := Open(b.TempDir()+"/bench.db", Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Revocations().Put(revocation("r1", "spiffe://example.org/a")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Revocations().Get("r1"); err != nil {
			b.Fatal(err)
		}
	}
}
