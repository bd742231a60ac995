// Package leader elects one controller replica, through a coordination.k8s.io Lease, to run the work only one
// may do at a time: SSF polling, housekeeping, CA rotation. It wraps client-go's tools/leaderelection; every
// replica keeps serving (xDS, attestation, SET push) whether it leads or not.
package leader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults, those of Kubernetes' own controllers: a leader that stops renewing loses the Lease after
// LeaseDuration; it gives up leading itself when it could not renew for RenewDeadline.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config configures New.
type Config struct {
	// Namespace and Name of the Lease; both required.
	Namespace, Name string
	// Identity of this replica (its pod name); required and unique among the replicas.
	Identity string
	// LeaseDuration, RenewDeadline and RetryPeriod: zero means the defaults above. LeaseDuration must exceed
	// RenewDeadline, which must exceed RetryPeriod times 1.2 (client-go's jitter).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// OnNewLeader, if set, is called with the identity of each leader this replica observes (itself included).
	OnNewLeader func(identity string)
	// Logger; default a no-op.
	Logger *zap.Logger
}

// Elector campaigns for the Lease and runs the registered singleton work while it holds it.
type Elector struct {
	cfg    Config
	lock   resourcelock.Interface
	leader atomic.Bool
	term   uint64 // counts terms, under mu

	mu      sync.Mutex
	work    []func(ctx context.Context)
	stopped bool           // Run has returned: no new term starts work
	running sync.WaitGroup // work of the current term
}

// New checks cfg and returns an Elector; Run starts it.
func New(client kubernetes.Interface, cfg Config) (*Elector, error) {
	switch {
	case cfg.Namespace == "" || cfg.Name == "":
		return nil, errors.New("leader: the Lease's namespace and name are required")
	case cfg.Identity == "":
		return nil, errors.New("leader: no identity")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	e := &Elector{cfg: cfg, lock: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}}
	if _, err := e.elector(); err != nil { // checks the durations
		return nil, err
	}
	return e, nil
}

// Go registers singleton work: each time this replica becomes leader, fn runs in its own goroutine with a
// context that ends when leadership is lost or Run's context ends. Register before Run.
func (e *Elector) Go(fn func(ctx context.Context)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.work = append(e.work, fn)
}

// IsLeader reports whether this replica holds the Lease now.
func (e *Elector) IsLeader() bool { return e.leader.Load() }

// Run campaigns until ctx ends, again after each lost term. When ctx ends the Lease is released, so another
// replica takes over at its next retry rather than after LeaseDuration, and Run returns once the singleton work
// has returned.
func (e *Elector) Run(ctx context.Context) error {
	defer func() {
		e.mu.Lock()
		e.stopped = true
		e.mu.Unlock()
		e.running.Wait()
	}()
	for ctx.Err() == nil {
		le, err := e.elector()
		if err != nil {
			return err
		}
		le.Run(ctx)
	}
	return nil
}

func (e *Elector) elector() (*leaderelection.LeaderElector, error) {
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            e.lock,
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: e.lead,
			// lead's watcher of its term's context clears IsLeader; client-go requires this callback anyway.
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				if e.cfg.OnNewLeader != nil {
					e.cfg.OnNewLeader(id)
				}
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader: %w", err)
	}
	return le, nil
}

// lead runs, in a goroutine of client-go's, once this replica holds the Lease; client-go cancels ctx when it
// stops renewing. The work of a term that ended before it started does not start.
func (e *Elector) lead(ctx context.Context) {
	e.mu.Lock()
	if e.stopped || ctx.Err() != nil {
		e.mu.Unlock()
		return
	}
	work := slices.Clone(e.work)
	e.running.Add(len(work))
	e.term++
	term := e.term
	e.leader.Store(true)
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		if e.term == term {
			e.leader.Store(false)
		}
		e.mu.Unlock()
		e.cfg.Logger.Info("leader: no longer holding the Lease", zap.String("lease", e.cfg.Namespace+"/"+e.cfg.Name))
	}()
	e.cfg.Logger.Info("leader: holding the Lease", zap.String("lease", e.cfg.Namespace+"/"+e.cfg.Name),
		zap.String("identity", e.cfg.Identity))
	for _, fn := range work {
		go func() {
			defer e.running.Done()
			fn(ctx)
		}()
	}
}
