package hamt

import (
	"hash/maphash"
	"slices"
)

// Map is an immutable map: a hash array mapped trie (Bagwell, "Ideal Hash Trees", 2001) of 16-way inner
// nodes over small leaves. Set and Del return a new trie that copies only the nodes on the path to the key and
// shares the rest, so a change costs a few hundred bytes whatever the map holds. That is what lets a sidecar
// replace its State on every xDS update, even with thousands of revocations, without the garbage of copying them.
// The zero value (with a hash) is empty; a Map is a value, and copies of it are independent maps.
type Map[K comparable, V any] struct {
	root *trieNode[K, V]
	n    int
	hash func(K) uint64
}

const (
	trieBits   = 4
	trieFanout = 1 << trieBits
	trieMask   = trieFanout - 1
	// trieLeafMax is how many entries a leaf holds before it splits into an inner node: small enough that a
	// lookup's scan and an update's copy stay cheap, large enough that sparse subtrees do not grow needless levels.
	trieLeafMax = 4
	// trieMaxShift is where a key's hash runs out; leaves at that depth hold every key with the same hash.
	trieMaxShift = 64
)

// trieNode is an inner node (kids set) or a leaf (entries only). Nodes are never changed once published.
type trieNode[K comparable, V any] struct {
	kids    *[trieFanout]*trieNode[K, V]
	entries []trieEntry[K, V]
}

type trieEntry[K comparable, V any] struct {
	hash uint64
	key  K
	val  V
}

// New returns an empty Map that hashes keys with hash.
func New[K comparable, V any](hash func(K) uint64) Map[K, V] {
	return Map[K, V]{hash: hash}
}

// Len returns the number of entries.
func (t Map[K, V]) Len() int { return t.n }

// Get returns the value of k, and whether there is one.
func (t Map[K, V]) Get(k K) (V, bool) {
	var zero V
	if t.root == nil {
		return zero, false
	}
	h := t.hash(k)
	n := t.root
	for shift := uint(0); n != nil; shift += trieBits {
		if n.kids == nil {
			for i := range n.entries {
				if e := &n.entries[i]; e.hash == h && e.key == k {
					return e.val, true
				}
			}
			break
		}
		n = n.kids[(h>>shift)&trieMask]
	}
	return zero, false
}

// Set returns t with k mapped to v.
func (t Map[K, V]) Set(k K, v V) Map[K, V] {
	root, added := t.root.with(0, trieEntry[K, V]{hash: t.hash(k), key: k, val: v})
	t.root = root
	if added {
		t.n++
	}
	return t
}

// Del returns t without k.
func (t Map[K, V]) Del(k K) Map[K, V] {
	root, removed := t.root.without(0, t.hash(k), k)
	if removed {
		t.root = root
		t.n--
	}
	return t
}

// Each calls fn for every entry, in no particular order.
func (t Map[K, V]) Each(fn func(K, V)) { t.root.each(fn) }

// with returns a copy of the subtree n (at depth shift) holding e, and whether e's key is new.
func (n *trieNode[K, V]) with(shift uint, e trieEntry[K, V]) (*trieNode[K, V], bool) {
	switch {
	case n == nil:
		return &trieNode[K, V]{entries: []trieEntry[K, V]{e}}, true
	case n.kids != nil:
		next := n.copyInner()
		i := (e.hash >> shift) & trieMask
		kid, added := next.kids[i].with(shift+trieBits, e)
		next.kids[i] = kid
		return next, added
	}
	for i := range n.entries {
		if n.entries[i].hash == e.hash && n.entries[i].key == e.key {
			entries := slices.Clone(n.entries)
			entries[i] = e
			return &trieNode[K, V]{entries: entries}, false
		}
	}
	if len(n.entries) < trieLeafMax || shift >= trieMaxShift {
		entries := make([]trieEntry[K, V], len(n.entries), len(n.entries)+1)
		copy(entries, n.entries)
		return &trieNode[K, V]{entries: append(entries, e)}, true
	}
	// A full leaf above the last level splits: its entries and e go one level down, by the next bits of their hash.
	split := (&trieNode[K, V]{kids: &[trieFanout]*trieNode[K, V]{}}).copyInner()
	for _, old := range append(slices.Clone(n.entries), e) {
		split, _ = split.with(shift, old)
	}
	return split, true
}

// without returns a copy of the subtree n (at depth shift) with no entry for k, and whether there was one. An
// emptied leaf or inner node becomes nil, so deletions do not leave dead nodes on later lookups' paths.
func (n *trieNode[K, V]) without(shift uint, h uint64, k K) (*trieNode[K, V], bool) {
	switch {
	case n == nil:
		return nil, false
	case n.kids != nil:
		i := (h >> shift) & trieMask
		kid, removed := n.kids[i].without(shift+trieBits, h, k)
		if !removed {
			return n, false
		}
		next := n.copyInner()
		next.kids[i] = kid
		if *next.kids == [trieFanout]*trieNode[K, V]{} {
			return nil, true
		}
		return next, true
	}
	i := slices.IndexFunc(n.entries, func(e trieEntry[K, V]) bool { return e.hash == h && e.key == k })
	switch {
	case i < 0:
		return n, false
	case len(n.entries) == 1:
		return nil, true
	}
	entries := make([]trieEntry[K, V], 0, len(n.entries)-1)
	entries = append(append(entries, n.entries[:i]...), n.entries[i+1:]...)
	return &trieNode[K, V]{entries: entries}, true
}

// copyInner copies the inner node n, node and children in one allocation.
func (n *trieNode[K, V]) copyInner() *trieNode[K, V] {
	c := &struct {
		node trieNode[K, V]
		kids [trieFanout]*trieNode[K, V]
	}{kids: *n.kids}
	c.node.kids = &c.kids
	return &c.node
}

func (n *trieNode[K, V]) each(fn func(K, V)) {
	switch {
	case n == nil:
	case n.kids != nil:
		for _, kid := range n.kids {
			kid.each(fn)
		}
	default:
		for _, e := range n.entries {
			fn(e.key, e.val)
		}
	}
}

// StringHasher hashes strings with seed.
func StringHasher(seed maphash.Seed) func(string) uint64 {
	return func(s string) uint64 { return maphash.String(seed, s) }
}
