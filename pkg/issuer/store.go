package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/store"
)

// Store is where the CA keeps its state. Every method is safe for concurrent use.
type Store interface {
	// CAMaterial returns the CA record called name, or an error wrapping ErrNotFound.
	CAMaterial(ctx context.Context, name string) (*agentauthv1.CAMaterial, error)
	// PutCAMaterial stores (or replaces) a CA record, durably.
	PutCAMaterial(ctx context.Context, m *agentauthv1.CAMaterial) error
	// RecordIssued records an issued certificate, durably, before it is handed out.
	RecordIssued(ctx context.Context, c *agentauthv1.IssuedCert) error
	// PutJoinToken stores a new join token record (its id is a hash of the secret).
	PutJoinToken(ctx context.Context, t *agentauthv1.JoinToken) error
	// UseJoinToken marks the token id used at now and returns it, as one atomic step. It fails, changing
	// nothing, with an error wrapping autherr.ErrDenied for an unknown token, autherr.ErrReplay for a used one and autherr.ErrExpired for
	// an expired one.
	UseJoinToken(ctx context.Context, id string, now time.Time) (*agentauthv1.JoinToken, error)
}

// BoltStore adapts pkg/store (the controller's bbolt file) to Store.
type BoltStore struct{ s store.Backend }

// NewBoltStore returns a Store that keeps the CA's state in s.
func NewBoltStore(s store.Backend) *BoltStore { return &BoltStore{s: s} }

// CAMaterial implements Store.
func (b *BoltStore) CAMaterial(_ context.Context, name string) (*agentauthv1.CAMaterial, error) {
	m, err := b.s.CA().Get(name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return m, err
}

// PutCAMaterial implements Store.
func (b *BoltStore) PutCAMaterial(_ context.Context, m *agentauthv1.CAMaterial) error {
	_, err := b.s.CA().Put(m)
	return err
}

// RecordIssued implements Store.
func (b *BoltStore) RecordIssued(_ context.Context, c *agentauthv1.IssuedCert) error {
	_, err := b.s.IssuedCerts().Put(c)
	return err
}

// PutJoinToken implements Store.
func (b *BoltStore) PutJoinToken(_ context.Context, t *agentauthv1.JoinToken) error {
	_, err := b.s.JoinTokens().Put(t)
	return err
}

// UseJoinToken implements Store; pkg/store checks and marks the token in one bbolt transaction.
func (b *BoltStore) UseJoinToken(_ context.Context, id string, now time.Time) (*agentauthv1.JoinToken, error) {
	return b.s.UseJoinToken(id, now)
}

var _ Store = (*BoltStore)(nil)
