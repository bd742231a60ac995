package xdsserver

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/xds"
)

// gRPC settings of the ADS server.
const (
	// A sidecar needs one ADS stream. A small per-connection cap keeps one (possibly compromised) sidecar from
	// opening thousands of streams, each holding watches and goroutines on the controller.
	maxStreamsPerConn = 4
	// The server pings a silent connection after keepaliveTime and drops it xds.KeepaliveTimeout later, so a
	// sidecar that vanished (host died, partition) frees its watches and leaves Nodes().
	keepaliveTime = 30 * time.Second
	// Clients may ping this often (our Client pings every 20s); faster pingers are disconnected, which bounds
	// the work a misbehaving client can cause.
	keepaliveMinTime = 10 * time.Second
	// Requests carry initial_resource_versions: about 80 bytes per revocation a sidecar holds.
	maxRecvMsgSize = 16 << 20
	// A TLS handshake that takes longer is abandoned.
	handshakeTimeout = 10 * time.Second
	readBufferSize   = 8 << 10
	// Longest NACK message kept per node; the rest is cut.
	maxNACKLen = 4096
)

// ServerConfig configures NewServer.
type ServerConfig struct {
	// TLSConfig must require and verify client certificates (X.509-SVIDs), e.g. pkg/mtls or go-spiffe
	// tlsconfig.MTLSServerConfig. Required.
	TLSConfig *tls.Config
	// HandshakeTimeout bounds a new connection's TLS handshake (zero: 10s). MaxConnIdle, when set, closes a
	// connection that has had no stream that long: a sidecar always holds its ADS stream.
	HandshakeTimeout, MaxConnIdle time.Duration
	// Logger defaults to a no-op logger.
	Logger *zap.Logger
}

// NodeStatus is what the controller knows of one connected sidecar stream.
type NodeStatus struct {
	// ID is the SPIFFE ID from the sidecar's X.509-SVID: the identity the controller uses.
	ID string
	// ClaimedID is the node.id the sidecar sent, shown for diagnosis only; it is never trusted.
	ClaimedID      string
	Address        string
	StreamID       int64
	ConnectedSince time.Time
	// Acked maps type URL to the system version the sidecar last ACKed.
	Acked map[string]string
	// Pending maps type URL to the version sent and not yet ACKed or NACKed.
	Pending map[string]string
	// NACKed maps type URL to the version the sidecar rejected, for the types whose last answer was a NACK.
	NACKed map[string]string
	// LastNACK is the sidecar's most recent rejection, or nil.
	LastNACK *NACK
}

// SyncStatus is how a sidecar's state of one resource type compares with the controller's, as istioctl
// proxy-status shows it.
type SyncStatus string

const (
	// Synced: the sidecar ACKed the controller's current version.
	Synced SyncStatus = "SYNCED"
	// Stale: the sidecar holds an older version, or has not yet answered the update it was sent.
	Stale SyncStatus = "STALE"
	// NACKed: the sidecar rejected the last update of the type it answered; it enforces its last good state.
	NACKed SyncStatus = "NACKED"
	// NotSent: the sidecar has not subscribed to the type yet, or holds none of it.
	NotSent SyncStatus = "NOT SENT"
)

// Sync compares the node's state of typeURL with current, the controller's version of it (Publisher.Versions).
func (n NodeStatus) Sync(typeURL, current string) SyncStatus {
	acked := n.Acked[typeURL]
	switch {
	case acked != "" && acked == current:
		return Synced
	case n.NACKed[typeURL] != "":
		return NACKed
	case acked == "" && n.Pending[typeURL] == "":
		return NotSent
	}
	return Stale
}

// NACK is a rejected update as the sidecar reported it.
type NACK struct {
	TypeURL string
	Version string
	Message string
	At      time.Time
}

// Server is the controller's delta ADS endpoint.
type Server struct {
	pub  *Publisher
	log  *zap.Logger
	grpc *grpc.Server
	stop context.CancelFunc

	mu    sync.Mutex
	nodes map[int64]*node
	// acks and nacks count every sidecar answer, by type URL, since start.
	acks, nacks map[string]uint64
}

type node struct {
	id, claimed, addr string
	// xds is what go-control-plane sees as the node: the one identity, set on every request that omits it (ACKs).
	xds      *core.Node
	since    time.Time
	acked    map[string]string
	pending  map[string]sent
	nacked   map[string]string
	lastNACK *NACK
}

type sent struct{ nonce, version string }

// NewServer builds the ADS server over pub's caches. Serve it on a listener; Stop ends it.
func NewServer(pub *Publisher, cfg ServerConfig) (*Server, error) {
	if err := checkServerTLS(cfg.TLSConfig); err != nil {
		return nil, err
	}
	s := &Server{pub: pub, log: cfg.Logger, nodes: map[int64]*node{}, acks: map[string]uint64{}, nacks: map[string]uint64{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	s.grpc = grpc.NewServer(
		// Each connection ends when the certificate of either side expires: the stream was authenticated by them
		// only. Sidecars reconnect before that, with their current SVID, and resume from the versions they hold.
		grpc.Creds(loggingCreds{mtls.GRPCCredentials(cfg.TLSConfig, func(remote net.Addr) {
			s.log.Info("xds: closing connection: its certificates expired", zap.String("peer", remote.String()),
				zap.String("reason", autherr.ErrPeerCertExpired.Code()))
		}), s.log}),
		grpc.ConnectionTimeout(cmp.Or(cfg.HandshakeTimeout, handshakeTimeout)),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// Sidecar streams are idle nearly always: release each connection's write buffer after a flush instead of
		// holding 32 KiB per sidecar, and keep a smaller read buffer (requests are small).
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(readBufferSize),
		// Fixed flow-control windows turn off gRPC's BDP estimation, whose pings would otherwise add a round of
		// frames (and syscalls on both ends) to every update sent to every sidecar.
		grpc.InitialWindowSize(xds.FlowWindow),
		grpc.InitialConnWindowSize(xds.FlowWindow),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: xds.KeepaliveTimeout, MaxConnectionIdle: cfg.MaxConnIdle}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	)
	ads := serverv3.NewServer(ctx, pub.mux, callbacks{s}, deltaserver.WithLogger(controlPlaneLogger(s.log)))
	discovery.RegisterAggregatedDiscoveryServiceServer(s.grpc, ads)
	return s, nil
}

// checkServerTLS refuses a configuration that would let a client in without a certificate: node identity comes
// from the certificate, so there must be one. (A GetConfigForClient hook is trusted to do the same.)
func checkServerTLS(c *tls.Config) error {
	switch {
	case c == nil:
		return errors.New("xds: server needs a TLS config (mTLS with X.509-SVIDs)")
	case c.GetConfigForClient != nil:
		return nil
	case c.ClientAuth != tls.RequireAnyClientCert && c.ClientAuth != tls.RequireAndVerifyClientCert:
		return fmt.Errorf("xds: server TLS config must require client certificates (ClientAuth is %v)", c.ClientAuth)
	case c.ClientAuth == tls.RequireAnyClientCert && c.VerifyPeerCertificate == nil && c.VerifyConnection == nil:
		return errors.New("xds: server TLS config requires client certificates but does not verify them")
	}
	return nil
}

// loggingCreds logs failed handshakes: a sidecar without a valid X.509-SVID never reaches the xDS callbacks,
// and the operator should see why it was turned away.
type loggingCreds struct {
	credentials.TransportCredentials
	log *zap.Logger
}

func (c loggingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.log.Warn("xds: refused connection without a valid X.509-SVID", zap.String("peer", conn.RemoteAddr().String()),
			zap.Error(err))
	}
	return out, info, err
}

func (c loggingCreds) Clone() credentials.TransportCredentials {
	return loggingCreds{c.TransportCredentials.Clone(), c.log}
}

// RegisterService serves another gRPC service to the sidecars on the same mTLS listener (the audit witness).
// Call it before Serve.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// Serve accepts sidecar connections on l until Stop.
func (s *Server) Serve(l net.Listener) error { return s.grpc.Serve(l) }

// Stop closes the listener and every stream at once; sidecars keep their state and reconnect.
func (s *Server) Stop() {
	s.stop()
	s.grpc.Stop()
}

// Answers returns how many updates sidecars have ACKed and NACKed since start, by type URL.
func (s *Server) Answers() (acks, nacks map[string]uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.acks), maps.Clone(s.nacks)
}

// Nodes returns the connected sidecar streams, ordered by SPIFFE ID then stream.
func (s *Server) Nodes() []NodeStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]NodeStatus, 0, len(s.nodes))
	for id, n := range s.nodes {
		ns := NodeStatus{ID: n.id, ClaimedID: n.claimed, Address: n.addr, StreamID: id, ConnectedSince: n.since,
			Acked: maps.Clone(n.acked), Pending: make(map[string]string, len(n.pending)), NACKed: maps.Clone(n.nacked)}
		for t, p := range n.pending {
			ns.Pending[t] = p.version
		}
		if n.lastNACK != nil {
			nack := *n.lastNACK
			ns.LastNACK = &nack
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), cmp.Compare(a.StreamID, b.StreamID))
	})
	return out
}

// peerSPIFFEID returns the SPIFFE ID of the verified client certificate of the stream.
func peerSPIFFEID(ctx context.Context) (id, addr string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", errors.New("no peer")
	}
	addr = p.Addr.String()
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", addr, errors.New("connection is not TLS")
	}
	if len(info.State.PeerCertificates) == 0 {
		return "", addr, errors.New("client sent no certificate")
	}
	sid, err := x509svid.IDFromCert(info.State.PeerCertificates[0])
	if err != nil {
		return "", addr, fmt.Errorf("client certificate is not an X.509-SVID: %w", err)
	}
	return sid.String(), addr, nil
}

// callbacks records each sidecar stream: its identity from the TLS peer, and ACK/NACK per type.
type callbacks struct{ s *Server }

var errSotW = status.Error(codes.Unimplemented, errDeltaOnly.Error())

func (c callbacks) OnStreamOpen(context.Context, int64, string) error        { return errSotW }
func (c callbacks) OnStreamClosed(int64, *core.Node)                         {}
func (c callbacks) OnStreamRequest(int64, *discovery.DiscoveryRequest) error { return errSotW }
func (c callbacks) OnStreamResponse(context.Context, int64, *discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}
func (c callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return errSotW }
func (c callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, streamID int64, _ string) error {
	id, addr, err := peerSPIFFEID(ctx)
	if err != nil {
		c.s.log.Warn("xds: refused stream without a valid SVID", zap.String("peer", addr), zap.Error(err))
		return status.Errorf(codes.Unauthenticated, "xds: %v", err)
	}
	c.s.mu.Lock()
	c.s.nodes[streamID] = &node{id: id, addr: addr, xds: &core.Node{Id: id}, since: time.Now(), acked: map[string]string{}, pending: map[string]sent{}, nacked: map[string]string{}}
	c.s.mu.Unlock()
	c.s.log.Info("xds: sidecar connected", zap.String("spiffe_id", id), zap.String("peer", addr), zap.Int64("stream", streamID))
	return nil
}

func (c callbacks) OnDeltaStreamClosed(streamID int64, _ *core.Node) {
	c.s.mu.Lock()
	n := c.s.nodes[streamID]
	delete(c.s.nodes, streamID)
	c.s.mu.Unlock()
	if n != nil {
		c.s.log.Info("xds: sidecar disconnected", zap.String("spiffe_id", n.id), zap.Int64("stream", streamID))
	}
}

func (c callbacks) OnStreamDeltaRequest(streamID int64, req *discovery.DeltaDiscoveryRequest) error {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	n := c.s.nodes[streamID]
	if n == nil {
		return status.Error(codes.Internal, "xds: request on an unknown stream")
	}
	// The node is who the certificate says, whatever the request claims: overwrite before go-control-plane sees it.
	if claimed := req.GetNode().GetId(); claimed != "" && claimed != n.claimed {
		n.claimed = claimed
		if claimed != n.id {
			c.s.log.Warn("xds: sidecar claims another node id; using its SVID", zap.String("spiffe_id", n.id),
				zap.String("claimed", claimed))
		}
	}
	if req.Node == nil {
		req.Node = n.xds
	} else {
		req.Node.Id = n.id
	}

	typeURL := req.GetTypeUrl()
	if !xds.Served(typeURL) {
		c.s.log.Warn("xds: request for a type this controller does not serve", zap.String("spiffe_id", n.id),
			zap.String("type", typeURL))
		return status.Errorf(codes.InvalidArgument, "xds: unknown resource type %q; served types are %v",
			typeURL, agentauthv1.ServedTypes())
	}
	// Refused before go-control-plane applies them: a named unsubscription would edit the version map that the
	// cache shares between subscriptions (see deltaCache).
	if len(req.GetResourceNamesUnsubscribe()) > 0 || slices.ContainsFunc(req.GetResourceNamesSubscribe(),
		func(name string) bool { return name != "*" }) {
		c.s.log.Warn("xds: refused a named subscription", zap.String("spiffe_id", n.id), zap.String("type", typeURL),
			zap.Strings("subscribe", req.GetResourceNamesSubscribe()),
			zap.Strings("unsubscribe", req.GetResourceNamesUnsubscribe()))
		return status.Error(codes.InvalidArgument, errNamed.Error())
	}
	nonce := req.GetResponseNonce()
	p, ok := n.pending[typeURL]
	if nonce == "" || !ok || p.nonce != nonce {
		return nil // a subscription change, or an answer to a response we have since superseded
	}
	delete(n.pending, typeURL)
	if detail := req.GetErrorDetail(); detail != nil {
		msg := detail.GetMessage()
		if len(msg) > maxNACKLen {
			msg = msg[:maxNACKLen] + "…"
		}
		n.lastNACK = &NACK{TypeURL: typeURL, Version: p.version, Message: msg, At: time.Now()}
		n.nacked[typeURL] = p.version
		c.s.nacks[typeURL]++
		c.s.log.Warn("xds: sidecar rejected an update", zap.String("spiffe_id", n.id), zap.String("type", typeURL),
			zap.String("version", p.version), zap.String("error", msg))
		return nil
	}
	n.acked[typeURL] = p.version
	delete(n.nacked, typeURL)
	c.s.acks[typeURL]++
	return nil
}

func (c callbacks) OnStreamDeltaResponse(streamID int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if n := c.s.nodes[streamID]; n != nil {
		n.pending[resp.GetTypeUrl()] = sent{nonce: resp.GetNonce(), version: resp.GetSystemVersionInfo()}
	}
}

var _ serverv3.Callbacks = callbacks{}
