package signals

import (
	"context"
	"errors"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
)

// Dedup remembers which SETs were applied, by (iss, jti), across restarts.
//
// The receiver checks Seen before applying a SET and calls Mark only after the Sink has applied it: marking
// first would lose the event if Apply then failed (the transmitter's retry would be taken for a duplicate).
// A crash between Apply and Mark means the retried SET is applied again, which is harmless because Map gives
// the same revocation ids and timestamps for the same SET, and a Sink merges risk states with MergeRisk, which
// drops an update older than the stored state.
type Dedup interface {
	// Seen reports whether (iss, jti) was marked and the mark is still kept.
	Seen(ctx context.Context, iss, jti string) (bool, error)
	// Mark records (iss, jti) until keepUntil. It returns an error wrapping autherr.ErrReplay when the SET was marked
	// meanwhile (two deliveries of one SET racing), which the receiver treats as success.
	Mark(ctx context.Context, iss, jti string, keepUntil time.Time) error
}

// StoreDedup is a Dedup over the controller's store (store.Backend's MarkSET), so a restarted controller still
// knows the SETs it applied. Prune old marks with store.PruneSETs.
type StoreDedup struct {
	st  store.Backend
	now func() time.Time
}

// NewStoreDedup returns a Dedup backed by st; now defaults to time.Now.
func NewStoreDedup(st store.Backend, now func() time.Time) *StoreDedup {
	if now == nil {
		now = time.Now
	}
	return &StoreDedup{st: st, now: now}
}

// Seen asks the store without leaving a live mark. The store offers no read-only check, so this calls MarkSET
// with a keepUntil long past: a live mark makes it fail with autherr.ErrReplay (seen), otherwise it writes a record that
// never counts and that Mark overwrites (and PruneSETs removes). It costs one store write per SET.
func (d *StoreDedup) Seen(_ context.Context, iss, jti string) (bool, error) {
	err := d.st.MarkSET(iss, jti, time.Unix(0, 0), d.now())
	if errors.Is(err, autherr.ErrReplay) {
		return true, nil
	}
	return false, err
}

// Mark records (iss, jti) until keepUntil; autherr.ErrReplay if a live mark exists.
func (d *StoreDedup) Mark(_ context.Context, iss, jti string, keepUntil time.Time) error {
	return d.st.MarkSET(iss, jti, keepUntil, d.now())
}

var _ Dedup = (*StoreDedup)(nil)
