package xds

import "hash/maphash"

// cowShards splits each map of a State so that an update copies only the shards it touches: applying one
// revocation costs about R/64 entry copies instead of R, which matters on a sidecar holding many revocations.
const cowShards = 64

// cowMap is an immutable map in shards. Readers call get; writers call edit, change the copy, and publish it.
type cowMap[K comparable, V any] struct {
	hash   func(K) uint64
	shards [cowShards]map[K]V // a nil shard is empty
	n      int
}

func newCowMap[K comparable, V any](hash func(K) uint64) *cowMap[K, V] {
	return &cowMap[K, V]{hash: hash}
}

func (m *cowMap[K, V]) get(k K) (V, bool) {
	v, ok := m.shards[m.hash(k)%cowShards][k]
	return v, ok
}

func (m *cowMap[K, V]) len() int { return m.n }

// each calls fn for every entry, in no particular order.
func (m *cowMap[K, V]) each(fn func(K, V)) {
	for _, sh := range m.shards {
		for k, v := range sh {
			fn(k, v)
		}
	}
}

// edit starts a copy of m; m itself never changes.
func (m *cowMap[K, V]) edit() *cowEditor[K, V] {
	next := *m
	return &cowEditor[K, V]{m: &next}
}

type cowEditor[K comparable, V any] struct {
	m      *cowMap[K, V]
	copied [cowShards]bool
}

// shard returns k's shard of the copy, cloning it from the original on first write.
func (e *cowEditor[K, V]) shard(k K) map[K]V {
	i := e.m.hash(k) % cowShards
	if !e.copied[i] {
		old := e.m.shards[i]
		sh := make(map[K]V, len(old)+1)
		for k, v := range old {
			sh[k] = v
		}
		e.m.shards[i] = sh
		e.copied[i] = true
	}
	return e.m.shards[i]
}

func (e *cowEditor[K, V]) get(k K) (V, bool) { return e.m.get(k) }

func (e *cowEditor[K, V]) set(k K, v V) {
	sh := e.shard(k)
	if _, ok := sh[k]; !ok {
		e.m.n++
	}
	sh[k] = v
}

func (e *cowEditor[K, V]) del(k K) {
	if _, ok := e.m.get(k); !ok {
		return
	}
	delete(e.shard(k), k)
	e.m.n--
}

// done returns the edited copy; the editor must not be used afterwards.
func (e *cowEditor[K, V]) done() *cowMap[K, V] { return e.m }

func stringHasher(seed maphash.Seed) func(string) uint64 {
	return func(s string) uint64 { return maphash.String(seed, s) }
}

func subjectHasher(seed maphash.Seed) func(subjectKey) uint64 {
	return func(k subjectKey) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(k.kind)
		h.WriteByte(0)
		h.WriteString(k.iss)
		h.WriteByte(0)
		h.WriteString(k.value)
		return h.Sum64()
	}
}
