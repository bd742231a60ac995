package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// Witnessed holds the latest audit checkpoint the controller witnessed from each sidecar, by SPIFFE ID.
func (s *Store) Witnessed() Collection[*agentauthv1.WitnessedCheckpoint] { return s.witnessed }

// SwapWitnessed reads the checkpoint stored for id (nil when none) and stores what next returns, in one durable
// transaction, so that two checkpoints from one sidecar are checked one after the other against what the other
// stored. next returning nil or an error stores nothing; its error is returned as is.
func (s *Store) SwapWitnessed(id string, next func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error)) error {
	c := s.witnessed
	if err := checkKey(c.bucket, id); err != nil {
		return err
	}
	_, err := s.update(func(tx *bolt.Tx, _ uint64) ([]Change, bool, error) {
		b := tx.Bucket([]byte(c.bucket))
		var old *agentauthv1.WitnessedCheckpoint
		if raw := b.Get([]byte(id)); raw != nil {
			v, err := c.decode(id, raw)
			if err != nil {
				return nil, false, err
			}
			old = v
		}
		v, err := next(old)
		if err != nil || v == nil {
			return nil, false, err
		}
		if v.GetSpiffeId() != id {
			return nil, false, fmt.Errorf("store: %s %q: the value names %q", c.bucket, id, v.GetSpiffeId())
		}
		raw, err := marshal(v)
		if err != nil {
			return nil, false, err
		}
		// Not announced to subscribers: nothing is served from this bucket.
		return nil, true, b.Put([]byte(id), raw)
	})
	return err
}
