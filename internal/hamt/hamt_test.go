package hamt

import (
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestHashTrieMatchesMap applies random sets and deletes to a trie and to a Go map, keeping every version of the
// trie, and checks after each step that every version still holds exactly what the map held at that step: the
// trie is a map, and no update changes an earlier version. The hashes range from well spread to all equal, so
// leaves split, fill past the last level, and empty out again.
func TestHashTrieMatchesMap(t *testing.T) {
	seed := maphash.MakeSeed()
	for _, tc := range []struct {
		name string
		hash func(string) uint64
	}{
		{"spread", StringHasher(seed)},
		{"16 hashes", func(s string) uint64 { return maphash.String(seed, s) % 16 }},
		{"one hash", func(string) uint64 { return 42 }},
		{"high bits only", func(s string) uint64 { return maphash.String(seed, s) & (0xf << 60) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			type version struct {
				trie Map[string, int]
				want map[string]int
			}
			cur, want := New[string, int](tc.hash), map[string]int{}
			var versions []version
			for step := range 3000 {
				k := strconv.Itoa(rng.IntN(300))
				if rng.IntN(3) == 0 {
					cur = cur.Del(k)
					delete(want, k)
				} else {
					cur = cur.Set(k, step)
					want[k] = step
				}
				if step%100 == 0 {
					versions = append(versions, version{cur, maps.Clone(want)})
				}
			}
			versions = append(versions, version{cur, want})
			for i, v := range versions {
				checkTrie(t, i, v.trie, v.want)
			}
		})
	}
}

func checkTrie(t *testing.T, version int, tr Map[string, int], want map[string]int) {
	t.Helper()
	if tr.Len() != len(want) {
		t.Fatalf("version %d: len %d, want %d", version, tr.Len(), len(want))
	}
	got := map[string]int{}
	tr.Each(func(k string, v int) {
		if _, dup := got[k]; dup {
			t.Fatalf("version %d: each visits %q twice", version, k)
		}
		got[k] = v
	})
	if !maps.Equal(got, want) {
		t.Fatalf("version %d: each gives %v, want %v", version, got, want)
	}
	for k, v := range want {
		if g, ok := tr.Get(k); !ok || g != v {
			t.Fatalf("version %d: get(%q) = %d, %v; want %d", version, k, g, ok, v)
		}
	}
	for _, k := range []string{"absent", "-1", "300"} {
		if _, ok := tr.Get(k); ok {
			t.Fatalf("version %d: get(%q) found a key never set", version, k)
		}
	}
}

// TestHashTrieEmpties checks that deleting everything leaves no nodes behind, so lookups on an emptied map do
// not walk dead paths, and that the zero trie answers lookups.
func TestHashTrieEmpties(t *testing.T) {
	var zero Map[string, int]
	if _, ok := zero.Get("x"); ok || zero.Len() != 0 {
		t.Fatal("zero trie is not empty")
	}
	tr := New[string, int](StringHasher(maphash.MakeSeed()))
	for i := range 1000 {
		tr = tr.Set(strconv.Itoa(i), i)
	}
	if tr.root.kids == nil {
		t.Fatal("1000 entries did not split the root")
	}
	for i := range 1000 {
		tr = tr.Del(strconv.Itoa(i))
	}
	if tr.root != nil || tr.Len() != 0 {
		t.Fatalf("emptied trie keeps root %p, len %d", tr.root, tr.Len())
	}
	if same := tr.Del("missing"); same.root != nil || same.Len() != 0 {
		t.Fatal("deleting a missing key changed the trie")
	}
}

// BenchmarkHashTrieSet is one set on a map of 10,000 entries: the copy an xDS update pays per changed name.
func BenchmarkHashTrieSet(b *testing.B) {
	tr := New[string, int](StringHasher(maphash.MakeSeed()))
	for i := range 10_000 {
		tr = tr.Set(strconv.Itoa(i), i)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = tr.Set("new", 1)
	}
}
