package testca

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// WorkloadAPI is a real SPIFFE Workload API gRPC server on a unix socket, for tests. It streams whatever the test
// last set (full state in every message, first message as soon as state exists), enforces the mandatory
// `workload.spiffe.io: true` metadata with InvalidArgument, and pushes every Set* to all open streams, so a test
// can rotate credentials under a live client.
type WorkloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	tb   testing.TB
	addr string
	srv  *grpc.Server

	mu          sync.Mutex
	changed     chan struct{} // closed and replaced on every Set*
	x509SVID    *workload.X509SVIDResponse
	x509Bundles *workload.X509BundlesResponse
	jwtBundles  *workload.JWTBundlesResponse
	witSVID     *workload.WITSVIDResponse
	witBundles  *workload.WITBundlesResponse
	jwtCA       *CA
	jwtID       spiffeid.ID
	noWIT       bool
}

// WorkloadAPIOption configures StartWorkloadAPI.
type WorkloadAPIOption func(*WorkloadAPI)

// WithoutWITProfile makes FetchWITSVID and FetchWITBundles answer Unimplemented, like a Workload API server that
// does not support the optional WIT-SVID profile.
func WithoutWITProfile() WorkloadAPIOption { return func(w *WorkloadAPI) { w.noWIT = true } }

// StartWorkloadAPI starts the server on a socket under tb.TempDir(); it stops at the end of the test.
func StartWorkloadAPI(tb testing.TB, opts ...WorkloadAPIOption) *WorkloadAPI {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "agent.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatalf("testca: listen %s: %v", path, err)
	}
	w := &WorkloadAPI{tb: tb, addr: "unix://" + path, changed: make(chan struct{})}
	for _, o := range opts {
		o(w)
	}
	w.srv = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkHeader(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkHeader(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	workload.RegisterSpiffeWorkloadAPIServer(w.srv, w)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			tb.Errorf("testca: workload API: %v", err)
		}
	}()
	tb.Cleanup(func() {
		w.srv.Stop()
		<-done
	})
	return w
}

// checkHeader enforces the Workload API's mandatory security header.
func checkHeader(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// Addr is the endpoint address in SPIFFE_ENDPOINT_SOCKET form, unix:///abs/path.
func (w *WorkloadAPI) Addr() string { return w.addr }

// ServeCA issues an X.509-SVID and a WIT-SVID for id from ca and serves them with ca's bundles; JWT-SVIDs for id are
// minted on request. It returns what it serves so the test can compare.
func (w *WorkloadAPI) ServeCA(ca *CA, id spiffeid.ID) (*x509svid.SVID, *WITSVID) {
	w.tb.Helper()
	svid := ca.CreateX509SVID(id)
	wit := ca.CreateWITSVID(id)
	w.SetX509SVID(svid, ca.X509Bundle())
	w.SetJWTBundles(ca.JWTBundle())
	w.SetWITSVID(wit)
	w.SetWITBundles(ca.WITBundle())
	w.mu.Lock()
	w.jwtCA, w.jwtID = ca, id
	w.mu.Unlock()
	return svid, wit
}

// SetX509SVID serves svid with the given bundles: the bundle of svid's trust domain goes with the SVID, the others
// are sent as federated bundles. FetchX509Bundles streams all of them.
func (w *WorkloadAPI) SetX509SVID(svid *x509svid.SVID, bundles ...*x509bundle.Bundle) {
	w.tb.Helper()
	certs, key, err := svid.MarshalRaw()
	if err != nil {
		w.tb.Fatalf("testca: marshal SVID: %v", err)
	}
	entry := &workload.X509SVID{SpiffeId: svid.ID.String(), X509Svid: certs, X509SvidKey: key, Hint: svid.Hint}
	resp := &workload.X509SVIDResponse{Svids: []*workload.X509SVID{entry}, FederatedBundles: map[string][]byte{}}
	all := &workload.X509BundlesResponse{Bundles: map[string][]byte{}}
	for _, b := range bundles {
		der := concatDER(b.X509Authorities())
		all.Bundles[b.TrustDomain().IDString()] = der
		if b.TrustDomain() == svid.ID.TrustDomain() {
			entry.Bundle = der
		} else {
			resp.FederatedBundles[b.TrustDomain().IDString()] = der
		}
	}
	w.set(func() { w.x509SVID, w.x509Bundles = resp, all })
}

// SetJWTBundles serves the JWT bundles (JWK Sets keyed by trust-domain SPIFFE ID).
func (w *WorkloadAPI) SetJWTBundles(bundles ...*jwtbundle.Bundle) {
	w.tb.Helper()
	resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
	for _, b := range bundles {
		doc, err := b.Marshal()
		if err != nil {
			w.tb.Fatalf("testca: marshal JWT bundle: %v", err)
		}
		resp.Bundles[b.TrustDomain().IDString()] = doc
	}
	w.set(func() { w.jwtBundles = resp })
}

// SetWITSVID serves wit and its private key (as a private JWK, as the WIT-SVID profile specifies).
func (w *WorkloadAPI) SetWITSVID(wit *WITSVID) {
	w.tb.Helper()
	key, err := jose.JSONWebKey{Key: wit.Key, Algorithm: wit.Alg}.MarshalJSON()
	if err != nil {
		w.tb.Fatalf("testca: marshal WIT key: %v", err)
	}
	resp := &workload.WITSVIDResponse{Svids: []*workload.WITSVID{{
		SpiffeId:   wit.ID.String(),
		WitSvid:    wit.Token,
		WitSvidKey: string(key),
	}}}
	w.set(func() { w.witSVID = resp })
}

// SetWITBundles serves the WIT bundles (JWK Sets keyed by trust-domain SPIFFE ID).
func (w *WorkloadAPI) SetWITBundles(bundles ...*witbundle.Bundle) {
	w.tb.Helper()
	resp := &workload.WITBundlesResponse{Bundles: map[string]string{}}
	for _, b := range bundles {
		doc, err := b.Marshal()
		if err != nil {
			w.tb.Fatalf("testca: marshal WIT bundle: %v", err)
		}
		resp.Bundles[b.TrustDomain().IDString()] = string(doc)
	}
	w.set(func() { w.witBundles = resp })
}

func (w *WorkloadAPI) set(apply func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	apply()
	close(w.changed)
	w.changed = make(chan struct{})
}

// FetchX509SVID implements the Workload API.
func (w *WorkloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, s grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return stream(w, s, func() *workload.X509SVIDResponse { return w.x509SVID })
}

// FetchX509Bundles implements the Workload API.
func (w *WorkloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, s grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return stream(w, s, func() *workload.X509BundlesResponse { return w.x509Bundles })
}

// FetchJWTBundles implements the Workload API.
func (w *WorkloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, s grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	return stream(w, s, func() *workload.JWTBundlesResponse { return w.jwtBundles })
}

// FetchWITSVID implements the Workload API's WIT-SVID profile.
func (w *WorkloadAPI) FetchWITSVID(req *workload.WITSVIDRequest, s grpc.ServerStreamingServer[workload.WITSVIDResponse]) error {
	if w.noWIT {
		return status.Error(codes.Unimplemented, "WIT-SVID profile not supported")
	}
	return stream(w, s, func() *workload.WITSVIDResponse {
		if w.witSVID == nil || req.SpiffeId == "" || req.SpiffeId == w.witSVID.Svids[0].SpiffeId {
			return w.witSVID
		}
		return nil
	})
}

// FetchWITBundles implements the Workload API's WIT-SVID profile.
func (w *WorkloadAPI) FetchWITBundles(_ *workload.WITBundlesRequest, s grpc.ServerStreamingServer[workload.WITBundlesResponse]) error {
	if w.noWIT {
		return status.Error(codes.Unimplemented, "WIT-SVID profile not supported")
	}
	return stream(w, s, func() *workload.WITBundlesResponse { return w.witBundles })
}

// FetchJWTSVID implements the Workload API for the identity set with ServeCA.
func (w *WorkloadAPI) FetchJWTSVID(_ context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	w.mu.Lock()
	ca, id := w.jwtCA, w.jwtID
	w.mu.Unlock()
	if ca == nil || (req.SpiffeId != "" && req.SpiffeId != id.String()) {
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	if len(req.Audience) == 0 {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	token := ca.CreateJWTSVID(id, req.Audience)
	return &workload.JWTSVIDResponse{Svids: []*workload.JWTSVID{{SpiffeId: id.String(), Svid: token}}}, nil
}

// stream sends the current state (when there is one) and then every change until the client goes away.
func stream[T comparable](w *WorkloadAPI, s interface {
	Send(T) error
	Context() context.Context
}, current func() T) error {
	var zero, last T
	for {
		w.mu.Lock()
		cur, changed := current(), w.changed
		w.mu.Unlock()
		if cur != zero && cur != last {
			if err := s.Send(cur); err != nil {
				return err
			}
			last = cur
		}
		select {
		case <-changed:
		case <-s.Context().Done():
			return nil
		}
	}
}

func concatDER(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}
