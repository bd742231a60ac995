package identity

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WITProvider supplies the workload's WIT when the Workload API does not, e.g. the controller's issuer or a
// FileSource reading a WIT written by another agent. If it also implements witbundle.Source it serves the WIT
// authorities, and if it has an `Updated() <-chan struct{}` method its changes are forwarded.
type WITProvider interface {
	GetWIT() (*WIT, error)
}

// WorkloadAPIConfig configures a WorkloadAPISource.
type WorkloadAPIConfig struct {
	// Addr is the Workload API endpoint, unix:///abs/path or tcp://ip:port. Empty means SPIFFE_ENDPOINT_SOCKET.
	Addr string

	// WITFromWorkloadAPI fetches the WIT-SVID and WIT bundles over the Workload API's optional WIT-SVID profile
	// (go-spiffe's experimental WIT support). Construction fails if the server does not implement it.
	WITFromWorkloadAPI bool

	// WITProvider supplies the WIT otherwise. Setting both is an error; setting neither means no WIT.
	WITProvider WITProvider

	Observer Observer // optional; watch errors are reported as RotationFailed

	// ClientOptions are extra go-spiffe client options (dial options, backoff strategy).
	ClientOptions []workloadapi.ClientOption
}

// WorkloadAPISource serves credentials from the SPIFFE Workload API (SPIRE agent or compatible), streaming
// rotations: X.509-SVID and X.509 bundles via workloadapi.X509Source, JWT bundles via workloadapi.JWTSource, and
// the WIT-SVID via workloadapi.WITSource or a WITProvider, all over one client connection.
type WorkloadAPISource struct {
	client   *workloadapi.Client
	x509     *workloadapi.X509Source
	jwt      *workloadapi.JWTSource
	wit      *workloadapi.WITSource // nil unless WITFromWorkloadAPI
	provider WITProvider
	observer Observer
	updates  *notifier
	witCache atomic.Pointer[WIT]

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewWorkloadAPISource connects and blocks until the first X.509 context, JWT bundles and (if configured) WIT
// arrive, or ctx ends.
func NewWorkloadAPISource(ctx context.Context, cfg WorkloadAPIConfig) (_ *WorkloadAPISource, err error) {
	if cfg.WITFromWorkloadAPI && cfg.WITProvider != nil {
		return nil, errors.New("identity: set WITFromWorkloadAPI or WITProvider, not both")
	}
	addr := cfg.Addr
	if addr == "" {
		var ok bool
		if addr, ok = workloadapi.GetDefaultAddress(); !ok {
			return nil, errors.New("identity: no Workload API address configured and SPIFFE_ENDPOINT_SOCKET is unset")
		}
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return nil, fmt.Errorf("identity: Workload API address %q: %w", addr, err)
	}
	s := &WorkloadAPISource{provider: cfg.WITProvider, observer: cfg.Observer, updates: newNotifier(), done: make(chan struct{})}
	if s.observer == nil {
		s.observer = ObserverFuncs{}
	}
	opts := append([]workloadapi.ClientOption{workloadapi.WithAddr(addr), workloadapi.WithLogger(watchLogger{s.observer})},
		cfg.ClientOptions...)
	if s.client, err = workloadapi.New(ctx, opts...); err != nil {
		return nil, fmt.Errorf("identity: Workload API client: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.closeSources())
		}
	}()
	if s.x509, err = workloadapi.NewX509Source(ctx, workloadapi.WithClient(s.client)); err != nil {
		return nil, fmt.Errorf("identity: Workload API X.509-SVID: %w", err)
	}
	if s.jwt, err = workloadapi.NewJWTSource(ctx, workloadapi.WithClient(s.client)); err != nil {
		return nil, fmt.Errorf("identity: Workload API JWT bundles: %w", err)
	}
	if cfg.WITFromWorkloadAPI {
		if s.wit, err = workloadapi.NewWITSource(ctx, workloadapi.WithClient(s.client)); err != nil {
			if status.Code(err) == codes.Unimplemented {
				return nil, fmt.Errorf("identity: the Workload API does not implement the WIT-SVID profile; configure a WITProvider: %w", err)
			}
			return nil, fmt.Errorf("identity: Workload API WIT-SVID: %w", err)
		}
	}
	watchCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	// The WIT source's first update channel is taken here, before returning, so a change right after
	// construction is not missed.
	witUpdated := s.witUpdates()
	var witCh <-chan struct{}
	if witUpdated != nil {
		witCh = witUpdated()
	}
	go s.forward(watchCtx, witUpdated, witCh)
	s.observer.Rotated(StatusOf(s))
	return s, nil
}

// forward turns every update of the underlying sources into one Updated signal and one Rotated call.
// witUpdates returns how to wait for the next WIT change, or nil when the WIT never changes on its own.
func (s *WorkloadAPISource) witUpdates() func() <-chan struct{} {
	switch {
	case s.wit != nil:
		return s.wit.Updated
	case s.provider != nil:
		if u, ok := s.provider.(interface{ Updated() <-chan struct{} }); ok {
			return u.Updated
		}
	}
	return nil
}

// forward turns every credential change into one update of this source. witCh is the WIT's pending update
// channel (nil: never ready); after each WIT change the next one is taken before the state is read.
func (s *WorkloadAPISource) forward(ctx context.Context, witUpdated func() <-chan struct{}, witCh <-chan struct{}) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.x509.Updated():
		case <-s.jwt.Updated():
		case <-witCh:
			witCh = witUpdated()
		}
		// Observers first: whoever wakes on the signal sees the rotation counted.
		s.observer.Rotated(StatusOf(s))
		s.updates.notify()
	}
}

// GetX509SVID implements x509svid.Source.
func (s *WorkloadAPISource) GetX509SVID() (*x509svid.SVID, error) { return s.x509.GetX509SVID() }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *WorkloadAPISource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.x509.GetX509BundleForTrustDomain(td)
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source.
func (s *WorkloadAPISource) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return s.jwt.GetJWTBundleForTrustDomain(td)
}

// GetWITBundleForTrustDomain implements witbundle.Source, from the Workload API or the WITProvider.
func (s *WorkloadAPISource) GetWITBundleForTrustDomain(td spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	if s.wit != nil {
		return s.wit.GetWITBundleForTrustDomain(td)
	}
	if p, ok := s.provider.(witbundle.Source); ok {
		return p.GetWITBundleForTrustDomain(td)
	}
	return nil, fmt.Errorf("identity: %w: no WIT authorities configured for %q", autherr.ErrUntrustedIssuer, td)
}

// GetWIT implements Source: the WIT-SVID for this workload's SPIFFE ID from the Workload API, or the provider's.
func (s *WorkloadAPISource) GetWIT() (*WIT, error) {
	now := time.Now()
	switch {
	case s.provider != nil:
		w, err := s.provider.GetWIT()
		if err != nil {
			return nil, err
		}
		return checkWIT(w, now)
	case s.wit == nil:
		return nil, ErrNoWIT
	}
	svid, err := s.x509.GetX509SVID()
	if err != nil {
		return nil, err
	}
	ws, err := s.wit.GetWITSVIDForID(svid.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoWIT, err)
	}
	token := ws.Marshal()
	if c := s.witCache.Load(); c != nil && c.Token == token {
		return checkWIT(c, now)
	}
	key, ok := ws.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("identity: %w: WIT-SVID key type %T cannot sign", autherr.ErrMalformed, ws.PrivateKey)
	}
	w, err := parseWIT(token, key, now)
	if err != nil {
		return nil, fmt.Errorf("identity: WIT-SVID from the Workload API: %w", err)
	}
	s.witCache.Store(w)
	return w, nil
}

// Updated implements Source.
func (s *WorkloadAPISource) Updated() <-chan struct{} { return s.updates.wait() }

// Close stops watching and closes the Workload API connection.
func (s *WorkloadAPISource) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		s.closeErr = s.closeSources()
	})
	return s.closeErr
}

func (s *WorkloadAPISource) closeSources() error {
	var errs []error
	if s.wit != nil {
		errs = append(errs, s.wit.Close())
	}
	if s.jwt != nil {
		errs = append(errs, s.jwt.Close())
	}
	if s.x509 != nil {
		errs = append(errs, s.x509.Close())
	}
	errs = append(errs, s.client.Close())
	return errors.Join(errs...)
}

func (s *WorkloadAPISource) trustDomains() []spiffeid.TrustDomain {
	svid, err := s.x509.GetX509SVID()
	if err != nil {
		return nil
	}
	// The X509Source exposes bundles by lookup only; report the SVID's own domain when it has authorities.
	if b, err := s.x509.GetX509BundleForTrustDomain(svid.ID.TrustDomain()); err == nil && !b.Empty() {
		return []spiffeid.TrustDomain{svid.ID.TrustDomain()}
	}
	return nil
}

// watchLogger turns go-spiffe's watch errors (stream broken, bad response) into RotationFailed events.
type watchLogger struct{ o Observer }

func (watchLogger) Debugf(string, ...any) {}
func (watchLogger) Infof(string, ...any)  {}
func (watchLogger) Warnf(string, ...any)  {}
func (l watchLogger) Errorf(format string, args ...any) {
	l.o.RotationFailed(fmt.Errorf("identity: workload API: "+format, args...))
}

var _ Source = (*WorkloadAPISource)(nil)
