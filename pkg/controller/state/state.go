package state

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds"
)

// ErrNotFound is returned when deleting something that does not exist.
var ErrNotFound = store.ErrNotFound

// Config configures New.
type Config struct {
	// Validators run, per type URL, on every resource before it is stored (e.g. a Cedar compile for policies).
	// The structural checks sidecars run (names, sizes, parseable trust anchors) always run.
	Validators map[string]xds.Validator
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// Now defaults to time.Now; it stamps Revocation.created and RiskState.updated when the caller left them unset.
	Now func() time.Time
}

// Service writes the controller's state and keeps its revocation index in step with the store: every committed
// change to the revocations, whoever wrote it (a restore from backup too), reaches the index before the write
// returns, so a revocation the admin API acknowledged refuses the next token request and renewal.
type Service struct {
	st         store.Backend
	validators map[string]xds.Validator
	log        *zap.Logger
	now        func() time.Time

	// mu orders index updates: the load at start, then each commit's changes in commit order.
	mu          sync.Mutex
	revs        atomic.Pointer[revocation.Index]
	unsubscribe func()
}

// New loads the revocation index from st and follows st's changes until Close.
func New(st store.Backend, cfg Config) (*Service, error) {
	s := &Service{st: st, validators: cfg.Validators, log: cfg.Logger, now: cfg.Now}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	for typeURL := range s.validators {
		switch typeURL {
		case agentauthv1.PolicyType, agentauthv1.RevocationType, agentauthv1.RiskStateType, agentauthv1.TrustBundleType:
		default:
			return nil, fmt.Errorf("state: validator for unknown type %q", typeURL)
		}
	}
	// Subscribe before listing, under mu: a change committed in between is both listed and then applied again,
	// which With makes harmless (a revocation replaces the one with its id).
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unsubscribe = st.Subscribe(s.follow)
	revs, err := st.Revocations().List()
	if err != nil {
		s.unsubscribe()
		return nil, fmt.Errorf("state: loading revocations: %w", err)
	}
	s.revs.Store(revocation.NewIndex(revs...))
	return s, nil
}

// follow applies a commit's revocation changes to the index.
func (s *Service) follow(changes []store.Change) {
	var add []*agentauthv1.Revocation
	var remove []string
	for _, ch := range changes {
		if ch.Bucket != store.BucketRevocations {
			continue
		}
		if r, ok := ch.Value.(*agentauthv1.Revocation); ok {
			add = append(add, r)
		} else {
			remove = append(remove, ch.Key)
		}
	}
	if len(add)+len(remove) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revs.Store(s.revs.Load().With(add, remove))
}

// Revocations returns the current revocation index. It is immutable: hold it for one decision.
func (s *Service) Revocations() *revocation.Index { return s.revs.Load() }

// Close stops following the store. The index keeps what it holds.
func (s *Service) Close() { s.unsubscribe() }

func (s *Service) check(typeURL string, res proto.Message) error {
	return xds.Check(typeURL, res, s.validators[typeURL])
}

// SetPolicies replaces the whole policy set in one durable write. Every policy is checked first; if one fails,
// nothing changes and the error names it.
func (s *Service) SetPolicies(policies []*agentauthv1.Policy) error {
	for _, pol := range policies {
		if err := s.check(agentauthv1.PolicyType, pol); err != nil {
			return fmt.Errorf("state: %w", err)
		}
	}
	if _, err := s.st.Policies().Replace(policies); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// UpsertRevocation stores r durably (created defaults to now); it is in the index, and published to every
// connected sidecar, when UpsertRevocation returns.
func (s *Service) UpsertRevocation(r *agentauthv1.Revocation) error {
	r = proto.CloneOf(r)
	if r.GetCreated() == nil {
		r.Created = timestamppb.New(s.now())
	}
	if err := s.check(agentauthv1.RevocationType, r); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := s.st.Revocations().Put(r); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// DeleteRevocation removes a revocation; ErrNotFound if there is none with that id.
func (s *Service) DeleteRevocation(id string) error {
	if _, err := s.st.Revocations().Delete(id); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// PruneRevocations deletes, in one durable write, revocations whose expires is not after now, and returns how
// many it deleted. Sidecars stop enforcing an expired revocation on their own; this keeps the state small.
func (s *Service) PruneRevocations(now time.Time) (int, error) {
	n, err := s.st.Revocations().DeleteFunc(func(r *agentauthv1.Revocation) bool { return revocation.Expired(r, now) })
	if err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	return n, nil
}

// SetRisk stores the risk state of its subject (updated defaults to now), replacing any earlier one.
func (s *Service) SetRisk(r *agentauthv1.RiskState) error {
	r = proto.CloneOf(r)
	if r.GetUpdated() == nil {
		r.Updated = timestamppb.New(s.now())
	}
	if err := s.check(agentauthv1.RiskStateType, r); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if _, err := s.st.Risk().Put(r); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// DeleteRisk forgets the risk state of a subject; ErrNotFound if there is none.
func (s *Service) DeleteRisk(subject *agentauthv1.Subject) error {
	if _, err := s.st.Risk().Delete(subject.Key()); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

// SetTrustBundle stores the bundle of its trust domain. A bundle with a lower sequence than the stored one is
// refused, so a stale writer cannot roll trust back.
func (s *Service) SetTrustBundle(b *agentauthv1.TrustBundle) error {
	if err := s.check(agentauthv1.TrustBundleType, b); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	old, err := s.st.TrustBundles().Get(b.GetTrustDomain())
	switch {
	case err == nil && b.GetSequence() < old.GetSequence():
		return fmt.Errorf("state: %w: trust bundle %s sequence %d is older than the stored %d", autherr.ErrMalformed,
			b.GetTrustDomain(), b.GetSequence(), old.GetSequence())
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("state: %w", err)
	}
	if _, err := s.st.TrustBundles().Put(b); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}
