package xdsserver

import (
	"fmt"
	"sync"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/xds"
)

// PublisherConfig configures NewPublisher.
type PublisherConfig struct {
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

// Publisher is the transport of the controller's state: it keeps one delta cache per resource type (see
// deltaCache) in step with the store, so connected sidecars get each committed change as a delta. It writes
// nothing: the controller's state service checks and stores changes (pkg/controller/state), and every write to
// the store, whoever makes it, is published.
type Publisher struct {
	log *zap.Logger

	caches map[string]*deltaCache // by type URL; the map itself is never written after NewPublisher
	mux    *cache.MuxCache

	// Store changes are queued here and moved into the caches by one goroutine: store writers do not wait for
	// the fan-out to every sidecar, and a burst of changes becomes one cache update (one pass over the watches).
	mu      sync.Mutex
	queued  map[string]map[string]types.Resource // type URL → name → resource, nil for a deletion
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}

	unsubscribe func()
}

// typeOfBucket maps a store bucket to the type URL its records are served as.
func typeOfBucket(bucket string) (string, bool) {
	switch bucket {
	case store.BucketPolicies:
		return agentauthv1.PolicyType, true
	case store.BucketRevocations:
		return agentauthv1.RevocationType, true
	case store.BucketRisk:
		return agentauthv1.RiskStateType, true
	case store.BucketTrustBundles:
		return agentauthv1.TrustBundleType, true
	}
	return "", false
}

// NewPublisher loads every served resource from st and starts following its changes. A controller restarted on
// the same store, or another replica of a shared one, serves the same resources with the same versions (resource
// and system versions depend on content only, see deltaCache), so reconnecting sidecars that send their known
// versions receive nothing they already have.
func NewPublisher(st store.Backend, cfg PublisherConfig) (*Publisher, error) {
	p := &Publisher{log: cfg.Logger,
		queued: map[string]map[string]types.Resource{}, wake: make(chan struct{}, 1),
		done: make(chan struct{}), stopped: make(chan struct{})}
	if p.log == nil {
		p.log = zap.NewNop()
	}

	// Subscribe before listing: a change committed in between is both listed and queued, and applying it twice
	// is harmless (an unchanged resource produces no update).
	p.unsubscribe = st.Subscribe(p.enqueue)
	version, err := st.Version()
	if err != nil {
		p.unsubscribe()
		return nil, fmt.Errorf("xds: %w", err)
	}
	initial := map[string]map[string]types.Resource{}
	if err := loadInto(initial, agentauthv1.PolicyType, st.Policies().List); err != nil {
		p.unsubscribe()
		return nil, err
	}
	if err := loadInto(initial, agentauthv1.RevocationType, st.Revocations().List); err != nil {
		p.unsubscribe()
		return nil, err
	}
	if err := loadInto(initial, agentauthv1.RiskStateType, st.Risk().List); err != nil {
		p.unsubscribe()
		return nil, err
	}
	if err := loadInto(initial, agentauthv1.TrustBundleType, st.TrustBundles().List); err != nil {
		p.unsubscribe()
		return nil, err
	}

	p.caches = make(map[string]*deltaCache, len(initial))
	caches := make(map[string]cache.Cache, len(initial))
	for _, typeURL := range agentauthv1.ServedTypes() {
		c, err := newDeltaCache(typeURL, initial[typeURL])
		if err != nil {
			p.unsubscribe()
			return nil, err
		}
		p.caches[typeURL] = c
		caches[typeURL] = c
	}
	p.mux = &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	go p.run()
	p.log.Info("xds: state loaded", zap.Uint64("store_version", version),
		zap.Int("policies", len(initial[agentauthv1.PolicyType])),
		zap.Int("revocations", len(initial[agentauthv1.RevocationType])),
		zap.Int("risk_states", len(initial[agentauthv1.RiskStateType])),
		zap.Int("trust_bundles", len(initial[agentauthv1.TrustBundleType])))
	return p, nil
}

func loadInto[T proto.Message](into map[string]map[string]types.Resource, typeURL string, list func() ([]T, error)) error {
	items, err := list()
	if err != nil {
		return fmt.Errorf("xds: load %s: %w", typeURL, err)
	}
	m := make(map[string]types.Resource, len(items))
	for _, it := range items {
		m[xds.ResourceName(it)] = it
	}
	into[typeURL] = m
	return nil
}

// Versions returns the system version the controller serves of each type URL: what a sidecar that holds
// everything has ACKed (NodeStatus.Sync).
func (p *Publisher) Versions() map[string]string {
	out := make(map[string]string, len(p.caches))
	for typeURL, c := range p.caches {
		out[typeURL] = c.systemVersion()
	}
	return out
}

// Len returns how many resources of typeURL the controller serves (0 for a type it does not serve).
func (p *Publisher) Len(typeURL string) int {
	c := p.caches[typeURL]
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.resources)
}

// Close stops following the store. The caches keep serving what they hold.
func (p *Publisher) Close() {
	p.unsubscribe()
	close(p.done)
	<-p.stopped
}

// enqueue runs after each store commit, in commit order; later changes to a name replace earlier ones.
func (p *Publisher) enqueue(changes []store.Change) {
	p.mu.Lock()
	for _, ch := range changes {
		typeURL, served := typeOfBucket(ch.Bucket)
		if !served {
			continue
		}
		if p.queued[typeURL] == nil {
			p.queued[typeURL] = map[string]types.Resource{}
		}
		p.queued[typeURL][ch.Key] = ch.Value
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run moves queued changes into the caches until Close.
func (p *Publisher) run() {
	defer close(p.stopped)
	for {
		select {
		case <-p.done:
			return
		case <-p.wake:
		}
		p.mu.Lock()
		batch := p.queued
		p.queued = map[string]map[string]types.Resource{}
		p.mu.Unlock()
		for _, typeURL := range agentauthv1.ServedTypes() {
			if len(batch[typeURL]) == 0 {
				continue
			}
			updated := map[string]types.Resource{}
			var deleted []string
			for name, res := range batch[typeURL] {
				if res == nil {
					deleted = append(deleted, name)
				} else {
					updated[name] = res
				}
			}
			if err := p.caches[typeURL].update(updated, deleted); err != nil {
				// Only a resource that fails to marshal gets here; the store marshalled it already.
				p.log.Error("xds: cache update failed", zap.String("type", typeURL), zap.Error(err))
			}
		}
	}
}

// controlPlaneLogger sends go-control-plane's logs to zap; its per-watch Info lines become Debug, since a
// controller with a thousand sidecars would otherwise log on every update.
func controlPlaneLogger(l *zap.Logger) log.Logger {
	s := l.Sugar()
	return log.LoggerFuncs{DebugFunc: s.Debugf, InfoFunc: s.Debugf, WarnFunc: s.Warnf, ErrorFunc: s.Errorf}
}
