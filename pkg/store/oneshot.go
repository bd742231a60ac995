package store

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// MarkSET records that the Security Event Token (issuer, jti) was processed, until keepUntil. It returns
// autherr.ErrReplay if the same (issuer, jti) was recorded before and that record has not passed its keepUntil at now.
// The check and the record are one durable transaction, so two deliveries of one SET cannot both pass.
func (s *Store) MarkSET(issuer, jti string, keepUntil, now time.Time) error {
	if jti == "" {
		return fmt.Errorf("store: %s: %w: empty jti", bucketSETs, autherr.ErrMalformed)
	}
	key := SETKey(issuer, jti)
	if err := checkKey(bucketSETs, key); err != nil {
		return err
	}
	_, err := s.update(func(tx *bolt.Tx, _ uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(bucketSETs))
		if old := b.Get([]byte(key)); old != nil {
			if len(old) != 8 {
				return nil, false, fmt.Errorf("store: %s %q: %w: %d bytes", bucketSETs, key, ErrCorrupt, len(old))
			}
			if until := time.Unix(0, int64(binary.BigEndian.Uint64(old))); now.Before(until) {
				return nil, false, fmt.Errorf("store: %w: SET jti %q from %q was already processed", autherr.ErrReplay, jti, issuer)
			}
		}
		var buf [8]byte
		binary.BigEndian.PutUint64(buf[:], uint64(keepUntil.UnixNano()))
		return nil, true, b.Put([]byte(key), buf[:])
	})
	return err
}

// PruneSETs forgets SET records whose keepUntil is not after now and returns how many it removed.
func (s *Store) PruneSETs(now time.Time) (int, error) {
	var n int
	_, err := s.update(func(tx *bolt.Tx, _ uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(bucketSETs))
		var stale [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || !now.Before(time.Unix(0, int64(binary.BigEndian.Uint64(v)))) {
				stale = append(stale, append([]byte(nil), k...))
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
		}
		n = len(stale)
		return nil, n > 0, nil
	})
	return n, err
}

// UseJoinToken marks the join token id used at now and returns it. It fails with autherr.ErrDenied if there is no such
// token, autherr.ErrReplay if it was used before, autherr.ErrExpired if it expired; in each case nothing changes. The check and
// the mark are one durable transaction, so a token admits exactly one caller.
func (s *Store) UseJoinToken(id string, now time.Time) (*agentauthv1.JoinToken, error) {
	if err := checkKey(BucketJoinTokens, id); err != nil {
		return nil, err
	}
	var out *agentauthv1.JoinToken
	_, err := s.update(func(tx *bolt.Tx, version uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(BucketJoinTokens))
		raw := b.Get([]byte(id))
		if raw == nil {
			return nil, false, fmt.Errorf("store: %w: unknown join token", autherr.ErrDenied)
		}
		t, err := s.joinTokens.decode(id, raw)
		if err != nil {
			return nil, false, err
		}
		switch {
		case t.GetUsed():
			return nil, false, fmt.Errorf("store: %w: join token for %s was already used at %s", autherr.ErrReplay,
				t.GetSpiffeId(), t.GetUsedAt().AsTime().Format(time.RFC3339))
		case t.GetExpires() != nil && !now.Before(t.GetExpires().AsTime()):
			return nil, false, fmt.Errorf("store: %w: join token for %s expired at %s", autherr.ErrExpired,
				t.GetSpiffeId(), t.GetExpires().AsTime().Format(time.RFC3339))
		}
		t.Used = true
		t.UsedAt = timestamppb.New(now)
		raw, err = marshal(t)
		if err != nil {
			return nil, false, err
		}
		if err := b.Put([]byte(id), raw); err != nil {
			return nil, false, err
		}
		out = t
		return []Change{{Bucket: BucketJoinTokens, Key: id, Value: proto.Clone(t), Version: version}}, true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
