package store

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// boltCollection is one bucket of protobuf messages of type T, each stored under the key its message names
// (a policy's id, a trust bundle's trust domain, …).
type boltCollection[T proto.Message] struct {
	s      *Store
	bucket string
	newT   func() T
	key    func(T) string
}

func newCollection[T proto.Message](s *Store, bucket string, newT func() T, key func(T) string) *boltCollection[T] {
	return &boltCollection[T]{s: s, bucket: bucket, newT: newT, key: key}
}

// Put stores v under its key, durably, and returns the store version of the write. Putting a value equal to
// the stored one changes nothing and returns the current version.
func (c *boltCollection[T]) Put(v T) (uint64, error) {
	key := c.key(v)
	if err := checkKey(c.bucket, key); err != nil {
		return 0, err
	}
	raw, err := marshal(v)
	if err != nil {
		return 0, fmt.Errorf("store: %s %q: %w", c.bucket, key, err)
	}
	return c.s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		if old := b.Get([]byte(key)); old != nil && bytes.Equal(old, raw) {
			return nil, false, nil
		}
		if err := b.Put([]byte(key), raw); err != nil {
			return nil, false, err
		}
		return []Change{{Bucket: c.bucket, Key: key, Value: proto.Clone(v), Version: version}}, true, nil
	})
}

// Create stores v under its key, durably, unless a value is stored there, and returns the stored value.
func (c *boltCollection[T]) Create(v T) (T, error) {
	var zero T
	key := c.key(v)
	if err := checkKey(c.bucket, key); err != nil {
		return zero, err
	}
	raw, err := marshal(v)
	if err != nil {
		return zero, fmt.Errorf("store: %s %q: %w", c.bucket, key, err)
	}
	out := v
	_, err = c.s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		if old := b.Get([]byte(key)); old != nil {
			stored, err := c.decode(key, old)
			out = stored
			return nil, false, err
		}
		if err := b.Put([]byte(key), raw); err != nil {
			return nil, false, err
		}
		return []Change{{Bucket: c.bucket, Key: key, Value: proto.Clone(v), Version: version}}, true, nil
	})
	if err != nil {
		return zero, err
	}
	return out, nil
}

// Get returns the value under key, ErrNotFound, or ErrCorrupt when the stored bytes do not decode.
func (c *boltCollection[T]) Get(key string) (T, error) {
	var out T
	err := c.s.view(func(tx *bolt.Tx) error {
		raw := tx.Bucket([]byte(c.bucket)).Get([]byte(key))
		if raw == nil {
			return fmt.Errorf("store: %s %q: %w", c.bucket, key, ErrNotFound)
		}
		v, err := c.decode(key, raw)
		out = v
		return err
	})
	return out, err
}

// List returns every value in key order. One corrupt value fails the whole list, naming its key.
func (c *boltCollection[T]) List() ([]T, error) {
	var out []T
	err := c.s.view(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(c.bucket)).ForEach(func(k, raw []byte) error {
			v, err := c.decode(string(k), raw)
			if err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Delete removes the value under key, durably. Deleting a missing key returns ErrNotFound and changes nothing.
func (c *boltCollection[T]) Delete(key string) (uint64, error) {
	if err := checkKey(c.bucket, key); err != nil {
		return 0, err
	}
	return c.s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		if b.Get([]byte(key)) == nil {
			return nil, false, fmt.Errorf("store: %s %q: %w", c.bucket, key, ErrNotFound)
		}
		if err := b.Delete([]byte(key)); err != nil {
			return nil, false, err
		}
		return []Change{{Bucket: c.bucket, Key: key, Version: version}}, true, nil
	})
}

// DeleteFunc removes, in one durable transaction, every value for which drop returns true, and returns how many
// it removed. A value that does not decode fails the whole call and nothing changes.
func (c *boltCollection[T]) DeleteFunc(drop func(T) bool) (int, error) {
	var n int
	_, err := c.s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		var stale [][]byte
		err := b.ForEach(func(k, raw []byte) error {
			v, err := c.decode(string(k), raw)
			if err != nil {
				return err
			}
			if drop(v) {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		changes := make([]Change, 0, len(stale))
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return nil, false, err
			}
			changes = append(changes, Change{Bucket: c.bucket, Key: string(k), Version: version})
		}
		n = len(stale)
		return changes, n > 0, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Replace makes the collection hold exactly vs, in one durable transaction: new and changed values are put,
// values not in vs are deleted. Two values with the same key are refused and nothing changes.
func (c *boltCollection[T]) Replace(vs []T) (uint64, error) {
	want := make(map[string][]byte, len(vs))
	byKey := make(map[string]T, len(vs))
	for _, v := range vs {
		key := c.key(v)
		if err := checkKey(c.bucket, key); err != nil {
			return 0, err
		}
		if _, dup := want[key]; dup {
			return 0, fmt.Errorf("store: %s: %w: duplicate key %q", c.bucket, autherr.ErrMalformed, key)
		}
		raw, err := marshal(v)
		if err != nil {
			return 0, fmt.Errorf("store: %s %q: %w", c.bucket, key, err)
		}
		want[key] = raw
		byKey[key] = v
	}
	return c.s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		var changes []Change
		var stale [][]byte
		err := b.ForEach(func(k, old []byte) error {
			if _, keep := want[string(k)]; !keep {
				stale = append(stale, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return nil, false, err
			}
			changes = append(changes, Change{Bucket: c.bucket, Key: string(k), Version: version})
		}
		for key, raw := range want {
			if old := b.Get([]byte(key)); old != nil && bytes.Equal(old, raw) {
				continue
			}
			if err := b.Put([]byte(key), raw); err != nil {
				return nil, false, err
			}
			changes = append(changes, Change{Bucket: c.bucket, Key: key, Value: proto.Clone(byKey[key]), Version: version})
		}
		return changes, len(changes) > 0, nil
	})
}

// check decodes every value in tx, so a damaged one is found when the store opens.
func (c *boltCollection[T]) check(tx *bolt.Tx) error {
	return tx.Bucket([]byte(c.bucket)).ForEach(func(k, raw []byte) error {
		_, err := c.decode(string(k), raw)
		return err
	})
}

func (c *boltCollection[T]) decode(key string, raw []byte) (T, error) {
	v := c.newT()
	if err := proto.Unmarshal(raw, v); err != nil {
		var zero T
		return zero, fmt.Errorf("store: %s %q: %w: %v", c.bucket, key, ErrCorrupt, err)
	}
	if got := c.key(v); got != key {
		var zero T
		return zero, fmt.Errorf("store: %s %q: %w: the value names key %q", c.bucket, key, ErrCorrupt, got)
	}
	return v, nil
}

// marshal is deterministic so that equal messages give equal bytes (Put of an unchanged value is a no-op).
func marshal(v proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(v)
}
