package xdsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/zap"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/xds"
)

// Client settings.
const (
	defaultBackoffBase = 250 * time.Millisecond
	defaultBackoffMax  = 30 * time.Second
	// Pings detect a dead controller (or a silent partition) within clientKeepaliveTime+xds.KeepaliveTimeout,
	// after which the client reports itself disconnected and reconnects. Not below the server's keepaliveMinTime
	// (xdsserver).
	clientKeepaliveTime = 20 * time.Second
	// The first response of a type carries the whole state of that type; revocation lists can be large.
	maxResponseSize = 64 << 20
)

// ClientConfig configures NewClient.
type ClientConfig struct {
	// Target is the controller's address, host:port. Required.
	Target string
	// TLSConfig presents this sidecar's X.509-SVID and verifies the controller's, e.g. pkg/mtls or go-spiffe
	// tlsconfig.MTLSClientConfig. Required.
	TLSConfig *tls.Config
	// NodeID is sent as node.id for the controller's logs; the controller identifies the node by its SVID.
	NodeID string
	// Validators run per type URL on every received resource after the structural checks; an error NACKs the
	// whole update with that error and keeps the last good state. E.g. a Cedar compile for policies.
	Validators map[string]xds.Validator
	// OnUpdate, if set, is called after each applied update and before it is ACKed, from the client's own
	// goroutine: drop cached decisions here. State() already returns the new state when it runs.
	OnUpdate func(Update)
	// BackoffBase and BackoffMax bound the reconnect delay: full jitter over base·2^attempt, capped at max.
	// Defaults 250ms and 30s.
	BackoffBase, BackoffMax time.Duration
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
	// StateFile, when set, keeps the last applied state (every resource with its version) across restarts:
	// NewClient restores it, so a sidecar restarted while the controller is down enforces it (fail-static) and
	// resumes from its versions; Run saves it after updates. A file that is corrupt, invalid or of another trust
	// domain is refused (logged) and the client starts empty (fail-closed).
	StateFile string
	// TrustDomain is this sidecar's; required with StateFile, which records it.
	TrustDomain string
}

// Update describes one applied update.
type Update struct {
	TypeURL string
	// Version is the controller's system version of the update.
	Version string
	// Updated and Removed are the resource names that changed.
	Updated, Removed []string
}

// Status is the client's health, for /readyz detail and metrics.
type Status struct {
	// Connected is true while a stream to the controller is up and has answered.
	Connected bool
	// Synced is true once every type has been received at least once: the state is complete. It stays true
	// while disconnected (fail-static: the sidecar keeps enforcing its last state).
	Synced bool
	// LastContact is when the controller last sent anything.
	LastContact time.Time
	// Versions maps type URL to the system version of the last applied update.
	Versions map[string]string
	// LastNACK is the error of the most recent rejected update ("" if none), LastNACKAt when it happened.
	LastNACK   string
	LastNACKAt time.Time
	// LastError is why the last stream ended ("" if none yet).
	LastError string
	// RestoredAt is when the state restored from StateFile at start was saved (zero if none was restored).
	RestoredAt time.Time
	// Connects counts streams that reached the controller; Applied and NACKs count updates; Received counts
	// resources received (a resumed stream with nothing new receives none).
	Connects, Applied, NACKs, Received uint64
}

// Client is a sidecar's delta ADS client. Run it; read State() on the request path.
type Client struct {
	cfg   ClientConfig
	log   *zap.Logger
	state atomic.Pointer[State]

	mu     sync.Mutex
	status Status
	synced map[string]bool
	// dirty signals persist that an update was applied (nil without StateFile).
	dirty chan struct{}
}

// NewClient checks cfg and returns a client holding an empty state.
func NewClient(cfg ClientConfig) (*Client, error) {
	switch {
	case cfg.Target == "":
		return nil, errors.New("xds: client needs a target address")
	case cfg.TLSConfig == nil:
		return nil, errors.New("xds: client needs a TLS config (mTLS with its X.509-SVID)")
	case cfg.StateFile != "" && cfg.TrustDomain == "":
		return nil, errors.New("xds: a state file needs the trust domain")
	}
	for typeURL := range cfg.Validators {
		if xds.NewResource(typeURL) == nil {
			return nil, fmt.Errorf("xds: validator for unknown type %q", typeURL)
		}
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = defaultBackoffBase
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = max(defaultBackoffMax, cfg.BackoffBase)
	}
	c := &Client{cfg: cfg, log: cfg.Logger, synced: map[string]bool{}}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.state.Store(emptyState())
	c.status.Versions = map[string]string{}
	if cfg.StateFile != "" {
		c.dirty = make(chan struct{}, 1)
		switch savedAt, err := c.restore(); {
		case err == nil:
			c.log.Info("xds: restored the saved state; enforcing it until the controller answers",
				zap.String("file", cfg.StateFile), zap.Time("saved_at", savedAt), zap.Int("policies", c.State().Len(agentauthv1.PolicyType)),
				zap.Int("revocations", c.State().Len(agentauthv1.RevocationType)))
		case errors.Is(err, os.ErrNotExist):
		default:
			c.log.Error("xds: refusing the saved state; nothing is allowed until the controller answers", zap.Error(err))
		}
	}
	return c, nil
}

// State returns the current snapshot. It never blocks and is never nil.
func (c *Client) State() *State { return c.state.Load() }

// Status returns a copy of the client's health.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Versions = make(map[string]string, len(c.status.Versions))
	for k, v := range c.status.Versions {
		st.Versions[k] = v
	}
	return st
}

// Run keeps a stream to the controller open until ctx ends, reconnecting with backoff; it returns nil then.
// While disconnected the last state stays in force.
func (c *Client) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.cfg.Target,
		// The connection closes itself a margin before its certificates (ours or the controller's) expire, so the
		// stream is re-established over a new handshake with the current SVID before the controller cuts it.
		grpc.WithTransportCredentials(mtls.GRPCCredentials(c.cfg.TLSConfig, nil)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: clientKeepaliveTime, Timeout: xds.KeepaliveTimeout, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseSize)),
		// Fixed windows: no BDP pings on every update (see the server).
		grpc.WithInitialWindowSize(xds.FlowWindow),
		grpc.WithInitialConnWindowSize(xds.FlowWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: c.cfg.BackoffBase, Multiplier: 2, Jitter: 0.5, MaxDelay: c.cfg.BackoffMax},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return fmt.Errorf("xds: client for %s: %w", c.cfg.Target, err)
	}
	defer conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	if c.dirty != nil {
		saveCtx, stopSaving := context.WithCancel(context.Background())
		saved := make(chan struct{})
		go func() { defer close(saved); c.persist(saveCtx) }()
		defer func() { stopSaving(); <-saved }()
	}

	attempt := 0
	for {
		reached, err := c.stream(ctx, ads)
		c.mu.Lock()
		c.status.Connected = false
		if err != nil && ctx.Err() == nil {
			c.status.LastError = err.Error()
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if reached {
			attempt = 0
		}
		delay := c.backoff(attempt)
		attempt++
		c.log.Warn("xds: stream to controller ended; keeping last state", zap.String("target", c.cfg.Target),
			zap.Error(err), zap.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is exponential with full jitter: uniform in [0, min(max, base·2^attempt)).
func (c *Client) backoff(attempt int) time.Duration {
	ceiling, limit := c.cfg.BackoffBase, c.cfg.BackoffMax
	for i := 0; i < attempt && ceiling < limit; i++ {
		if ceiling > limit/2 {
			ceiling = limit
		} else {
			ceiling *= 2
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling)))
}

// stream runs one ADS stream. reached reports whether the controller answered at all.
func (c *Client) stream(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (reached bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	str, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	st := c.State()
	for i, typeURL := range agentauthv1.ServedTypes() {
		req := &discovery.DeltaDiscoveryRequest{
			TypeUrl:                typeURL,
			ResourceNamesSubscribe: []string{"*"},
			// Resume: the controller sends only resources whose version differs, and removals.
			InitialResourceVersions: st.ResourceVersions(typeURL),
		}
		if i == 0 {
			req.Node = &core.Node{Id: c.cfg.NodeID}
		}
		if err := str.Send(req); err != nil {
			return false, err
		}
	}
	for {
		resp, err := str.Recv()
		if err != nil {
			return reached, err
		}
		if !reached {
			reached = true
			c.mu.Lock()
			c.status.Connected = true
			c.status.Connects++
			c.mu.Unlock()
			c.log.Info("xds: connected to controller", zap.String("target", c.cfg.Target))
		}
		if err := str.Send(c.handle(resp)); err != nil {
			return reached, err
		}
	}
}

// handle applies one response and returns its ACK, or leaves the state alone and returns a NACK.
func (c *Client) handle(resp *discovery.DeltaDiscoveryResponse) *discovery.DeltaDiscoveryRequest {
	now := time.Now()
	typeURL := resp.GetTypeUrl()
	reply := &discovery.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}
	c.mu.Lock()
	c.status.LastContact = now
	c.status.Received += uint64(len(resp.GetResources()))
	c.mu.Unlock()

	updates, err := c.decode(resp)
	if err != nil {
		msg := fmt.Sprintf("rejected %s version %s: %v", xds.ShortType(typeURL), resp.GetSystemVersionInfo(), err)
		c.mu.Lock()
		c.status.LastNACK, c.status.LastNACKAt = msg, now
		c.status.NACKs++
		c.mu.Unlock()
		c.log.Warn("xds: NACK; keeping last good state", zap.String("type", typeURL), zap.String("error", msg))
		reply.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: msg}
		return reply
	}

	next := c.State().with(typeURL, updates, resp.GetRemovedResources())
	c.state.Store(next)
	c.mu.Lock()
	c.status.Versions[typeURL] = resp.GetSystemVersionInfo()
	c.status.Applied++
	c.synced[typeURL] = true
	c.status.Synced = len(c.synced) == len(agentauthv1.ServedTypes())
	c.mu.Unlock()
	c.markDirty()

	if c.cfg.OnUpdate != nil {
		names := make([]string, len(updates))
		for i, u := range updates {
			names[i] = u.name
		}
		c.cfg.OnUpdate(Update{TypeURL: typeURL, Version: resp.GetSystemVersionInfo(), Updated: names,
			Removed: resp.GetRemovedResources()})
	}
	return reply
}

// decode unmarshals and checks every resource of a response; the first failure rejects the whole response.
func (c *Client) decode(resp *discovery.DeltaDiscoveryResponse) ([]resourceUpdate, error) {
	typeURL := resp.GetTypeUrl()
	if !xds.Served(typeURL) {
		return nil, fmt.Errorf("unknown resource type %q", typeURL)
	}
	validate := c.cfg.Validators[typeURL]
	out := make([]resourceUpdate, 0, len(resp.GetResources()))
	seen := make(map[string]bool, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		name := r.GetName()
		if seen[name] {
			return nil, fmt.Errorf("resource %q appears twice", name)
		}
		seen[name] = true
		if got := r.GetResource().GetTypeUrl(); got != typeURL {
			return nil, fmt.Errorf("resource %q has type %q in a %s response", name, got, xds.ShortType(typeURL))
		}
		msg := xds.NewResource(typeURL)
		if err := proto.Unmarshal(r.GetResource().GetValue(), msg); err != nil {
			return nil, fmt.Errorf("resource %q does not decode: %v", name, err)
		}
		if err := xds.CheckResource(name, msg); err != nil {
			return nil, err
		}
		if validate != nil {
			if err := validate(name, msg); err != nil {
				return nil, fmt.Errorf("%s: %w", xds.Describe(typeURL, name, msg), err)
			}
		}
		out = append(out, resourceUpdate{name: name, version: r.GetVersion(), msg: msg})
	}
	return out, nil
}
