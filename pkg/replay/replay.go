package replay

import (
	"container/heap"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

const (
	// DefaultMaxEntries bounds the cache when Options.MaxEntries is zero. An entry costs about 60 bytes whatever
	// its id (a 128-bit keyed hash of it is kept, not the id), so a full cache takes about 60 MiB; memory is only
	// used while entries live.
	// With a 1-minute WPT lifetime and 30 s skew that is room for over 10,000 fresh proofs per second.
	DefaultMaxEntries = 1 << 20

	numShards = 64
	// bucketWidth groups expiries so a sweep frees a whole bucket at once instead of keeping one timer or heap
	// element per entry. Entries may be held up to one bucketWidth past their expiry (never less).
	bucketDuration = time.Second
	bucketWidth    = int64(bucketDuration)
)

// Options configures a Cache.
type Options struct {
	// MaxEntries is the most identifiers held at once (including expired ones not yet swept); 0 means
	// DefaultMaxEntries.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache records identifiers until their expiry. The zero value is not usable; call New.
//
// It keeps a 128-bit hash of each identifier under two random seeds, not the identifier: entries then hold no
// pointers, so the garbage collector never scans them, however many a busy receiver holds (at 1,000 proofs a
// second and 90 s each, 90,000, where a sidecar's own live heap is a few MB), and an identifier is not kept alive
// after the call. Two identifiers share a hash with probability 2^-128 per pair, and a shared hash could only
// refuse a fresh proof as a replay, never accept a replayed one.
type Cache struct {
	max          int64
	now          func() time.Time
	seed0, seed1 maphash.Seed
	count        atomic.Int64
	shards       [numShards]shard
}

// key is an identifier's hash under the cache's two seeds.
type key [2]uint64

type shard struct {
	mu      sync.Mutex
	entries map[key]int64 // id -> expiry, unix nanoseconds
	buckets bucketHeap    // bucket indexes, soonest first
	members map[int64][]key
	// nextSweep is the end of the soonest bucket (unix ns), or max int64 when empty; read without the lock to
	// skip shards with nothing to free.
	nextSweep atomic.Int64
}

// New returns an empty cache.
func New(opts Options) *Cache {
	c := &Cache{max: int64(opts.MaxEntries), now: opts.Now, seed0: maphash.MakeSeed(), seed1: maphash.MakeSeed()}
	if c.max <= 0 {
		c.max = DefaultMaxEntries
	}
	if c.now == nil {
		c.now = time.Now
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = make(map[key]int64)
		s.members = make(map[int64][]key)
		s.nextSweep.Store(noSweep)
	}
	return c
}

const noSweep = int64(^uint64(0) >> 1)

var errFull = errors.New("full")

// Check records id until expiresAt and reports whether it was already recorded. It returns an error wrapping
// autherr.ErrReplay if id is held with an expiry still in the future, and one wrapping autherr.ErrTooLarge if the
// cache is full of unexpired entries (the caller must refuse the request). The check and the record are one atomic
// step: of many concurrent calls with the same id, exactly one succeeds.
//
// id is opaque. Callers scope it themselves, e.g. issuer or subject + "\x00" + jti, so that two senders cannot
// collide and one sender cannot exhaust another's identifiers. expiresAt should be the last instant the proof could
// be accepted (its exp plus the verifier's clock skew). An id whose expiresAt has already passed is checked but not
// recorded, since it cannot be accepted again anyway.
func (c *Cache) Check(id string, expiresAt time.Time) error {
	now := c.now().UnixNano()
	exp := expiresAt.UnixNano()
	k := key{maphash.String(c.seed0, id), maphash.String(c.seed1, id)}
	s := &c.shards[k[0]%numShards]
	err := s.check(c, k, exp, now)
	if err == errFull {
		// Other shards may hold expired entries that count against the bound; free them and try once more.
		c.sweepAll(now)
		err = s.check(c, k, exp, now)
	}
	if err == errFull {
		return fmt.Errorf("replay: %w: cache holds %d unexpired identifiers, refusing new ones", autherr.ErrTooLarge, c.max)
	}
	return err
}

// Len returns the number of identifiers held. It frees expired ones first, but an identifier may be counted for up
// to a second past its expiry.
func (c *Cache) Len() int {
	c.sweepAll(c.now().UnixNano())
	return int(c.count.Load())
}

func (c *Cache) sweepAll(now int64) {
	for i := range c.shards {
		s := &c.shards[i]
		if s.nextSweep.Load() > now {
			continue
		}
		s.mu.Lock()
		s.sweep(c, now)
		s.mu.Unlock()
	}
}

func (s *shard) check(c *Cache, id key, exp, now int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nextSweep.Load() <= now {
		s.sweep(c, now)
	}
	held, ok := s.entries[id]
	if ok && held > now {
		return fmt.Errorf("%w: identifier seen before and valid until %s", autherr.ErrReplay,
			time.Unix(0, held).UTC().Format(time.RFC3339))
	}
	if exp <= now {
		return nil
	}
	if !ok {
		if c.count.Add(1) > c.max {
			c.count.Add(-1)
			return errFull
		}
	}
	// An expired, not yet swept entry is overwritten in place; its old bucket skips it when swept because the
	// stored expiry has moved on.
	s.entries[id] = exp
	b := exp / bucketWidth
	if exp%bucketWidth != 0 {
		b++
	}
	m, ok := s.members[b]
	if !ok {
		heap.Push(&s.buckets, b)
		if end := b * bucketWidth; end < s.nextSweep.Load() {
			s.nextSweep.Store(end)
		}
	}
	s.members[b] = append(m, id)
	return nil
}

// sweep frees every bucket whose end has passed. Called with s.mu held.
func (s *shard) sweep(c *Cache, now int64) {
	freed := int64(0)
	for len(s.buckets) > 0 && s.buckets[0]*bucketWidth <= now {
		b := heap.Pop(&s.buckets).(int64)
		for _, id := range s.members[b] {
			if exp, ok := s.entries[id]; ok && exp <= now {
				delete(s.entries, id)
				freed++
			}
		}
		delete(s.members, b)
	}
	c.count.Add(-freed)
	if len(s.buckets) == 0 {
		s.nextSweep.Store(noSweep)
	} else {
		s.nextSweep.Store(s.buckets[0] * bucketWidth)
	}
}

// bucketHeap is a min-heap of bucket indexes.
type bucketHeap []int64

func (h bucketHeap) Len() int           { return len(h) }
func (h bucketHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h bucketHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *bucketHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *bucketHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
