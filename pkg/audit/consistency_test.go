package audit

import (
	"bytes"
	"context"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// TestProverMatchesConsistencyProof: proofs from the incremental Prover, across rotated files, are those computed
// from the whole log, and verify; proving from a size it did not reach last rereads the log and still agrees.
func TestProverMatchesConsistencyProof(t *testing.T) {
	dir := t.TempDir()
	s, _ := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s, MaxFileBytes: 2048})
	for i := range 100 {
		if _, err := w.Append(context.Background(), testRecord(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if nums, _ := logFiles(dir); len(nums) < 3 {
		t.Fatalf("%d files: the test wants rotation", len(nums))
	}
	ents, _, _, err := loadLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	rootAt := func(n uint64) []byte {
		r := rangeFactory.NewEmptyRange(0)
		for _, e := range ents[:n] {
			if err := r.Append(e.hash, nil); err != nil {
				t.Fatal(err)
			}
		}
		root, err := rootOf(r)
		if err != nil {
			t.Fatal(err)
		}
		return root
	}
	p := NewProver(dir)
	steps := [][2]uint64{{0, 1}, {1, 2}, {2, 3}, {3, 7}, {7, 8}, {8, 33}, {33, 33}, {33, 64}, {64, 99}, {5, 40}, {40, 100}, {100, 100}}
	for _, st := range steps {
		got, err := p.Consistency(st[0], st[1])
		if err != nil {
			t.Fatalf("%v: %v", st, err)
		}
		want, err := ConsistencyProof(dir, st[0], st[1])
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%v: %d hashes, want %d", st, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%v: hash %d differs", st, i)
			}
		}
		if st[0] > 0 {
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, st[0], st[1], got, rootAt(st[0]), rootAt(st[1])); err != nil {
				t.Fatalf("%v: %v", st, err)
			}
		}
	}
	if _, err := p.Consistency(100, 101); err == nil {
		t.Fatal("a proof to more records than the log has")
	}
}
