package issuer

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/local"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer/issuerclient"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wire"
)

// serve runs g on a 127.0.0.1 listener until the test ends and returns its address.
func serve(t *testing.T, g *grpc.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ln.Addr().String()
}

func startIssuer(t *testing.T, ca *CA) string {
	t.Helper()
	g, err := NewGRPCServer(ca, ServiceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, g)
}

// dial connects to the issuer, authenticating it by its SPIFFE ID against bundle; with svid set the client
// presents it (mTLS).
func dial(t *testing.T, addr string, bundle *x509bundle.Bundle, svid *x509svid.SVID) *issuerclient.Client {
	t.Helper()
	auth := tlsconfig.AuthorizeID(wire.IssuerID(td))
	conf := tlsconfig.TLSClientConfig(bundle, auth)
	if svid != nil {
		conf = tlsconfig.MTLSClientConfig(svid, bundle, auth)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return issuerclient.NewClient(cc)
}

type keys struct {
	x509, wit crypto.Signer
}

func newKeys(t *testing.T) keys { return keys{x509: newP256(t), wit: newP256(t)} }

func (k keys) attest(t *testing.T, token string) *agentauthv1.AttestRequest {
	return &agentauthv1.AttestRequest{JoinToken: token, Csr: csrFor(t, k.x509), WitPublicKey: spkiOf(t, k.wit.Public()), WitAlg: "ES256"}
}

func (k keys) renew(t *testing.T) *agentauthv1.RenewRequest {
	return &agentauthv1.RenewRequest{Csr: csrFor(t, k.x509), WitPublicKey: spkiOf(t, k.wit.Public()), WitAlg: "ES256"}
}

func (k keys) verify(t *testing.T, c *agentauthv1.Credentials) *issuerclient.Issued {
	t.Helper()
	is, err := issuerclient.VerifyCredentials(c, k.x509.Public(), k.wit.Public(), time.Now())
	if err != nil {
		t.Fatalf("credentials do not verify: %v", err)
	}
	return is
}

func (k keys) svid(is *issuerclient.Issued) *x509svid.SVID {
	return &x509svid.SVID{ID: is.ID, Certificates: is.Chain, PrivateKey: k.x509}
}

func wantCode(t *testing.T, err error, code codes.Code, reason error) {
	t.Helper()
	if !errors.Is(err, reason) {
		t.Fatalf("err = %v, want reason %v", err, reason)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("code = %v, want %v (%v)", got, code, err)
	}
}

func TestAttestThenRenew(t *testing.T) {
	f := newFixture(t)
	addr := startIssuer(t, f.ca)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	token, err := f.ca.CreateJoinToken(ctx, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	anon := dial(t, addr, f.ca.X509Bundle(), nil)
	k := newKeys(t)
	creds, err := anon.Attest(ctx, k.attest(t, token))
	if err != nil {
		t.Fatal(err)
	}
	is := k.verify(t, creds)
	if is.ID != id || len(is.Chain[0].DNSNames) != 0 || len(is.Chain[0].URIs) != 1 {
		t.Fatalf("issued %v with DNS %v URIs %v: the CSR's names must be ignored", is.ID, is.Chain[0].DNSNames, is.Chain[0].URIs)
	}
	issued := f.store.issuedCount()

	// The same token again: refused, nothing issued.
	_, err = anon.Attest(ctx, newKeys(t).attest(t, token))
	wantCode(t, err, codes.PermissionDenied, autherr.ErrDenied)
	if n := f.store.issuedCount(); n != issued {
		t.Fatalf("a replayed token issued %d certificates", n-issued)
	}

	// Renew over mTLS with the SVID: same identity, fresh keys, whatever the CSR asks for.
	mtls := dial(t, addr, f.ca.X509Bundle(), k.svid(is))
	k2 := newKeys(t)
	req := k2.renew(t)
	req.Csr = csrWithURI(t, k2.x509, "spiffe://example.org/admin")
	creds, err = mtls.Renew(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	is2 := k2.verify(t, creds)
	if is2.ID != id {
		t.Fatalf("Renew issued %v, want %v", is2.ID, id)
	}
	if is2.Chain[0].SerialNumber.Cmp(is.Chain[0].SerialNumber) == 0 {
		t.Error("Renew reused the serial")
	}
}

func csrWithURI(t *testing.T, key crypto.Signer, uri string) []byte {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return csrTemplate(t, key, u)
}

func TestRenewRefusals(t *testing.T) {
	f := newFixture(t)
	addr := startIssuer(t, f.ca)
	ctx := context.Background()
	k := newKeys(t)

	// No client certificate at all.
	_, err := dial(t, addr, f.ca.X509Bundle(), nil).Renew(ctx, k.renew(t))
	wantCode(t, err, codes.Unauthenticated, autherr.ErrMissing)

	// An SVID for the right trust domain from another CA.
	other := testca.New(t, td)
	foreign := other.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/a"))
	_, err = dial(t, addr, f.ca.X509Bundle(), foreign).Renew(ctx, k.renew(t))
	wantCode(t, err, codes.Unauthenticated, autherr.ErrUntrustedIssuer)

	if n := f.store.issuedCount(); n != 1 { // the server's own certificate
		t.Fatalf("%d certificates issued, want only the server's", n)
	}
}

func TestAttestRefusals(t *testing.T) {
	f := newFixture(t)
	addr := startIssuer(t, f.ca)
	ctx := context.Background()
	c := dial(t, addr, f.ca.X509Bundle(), nil)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	token, err := f.ca.CreateJoinToken(ctx, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k := newKeys(t)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		mutate func(*agentauthv1.AttestRequest)
		code   codes.Code
		reason error
	}{
		{"no token", func(r *agentauthv1.AttestRequest) { r.JoinToken = "" }, codes.Unauthenticated, autherr.ErrMissing},
		{"garbage CSR", func(r *agentauthv1.AttestRequest) { r.Csr = []byte("nope") }, codes.InvalidArgument, autherr.ErrMalformed},
		{"CSR signed by another key", func(r *agentauthv1.AttestRequest) { r.Csr = forgedCSR(t, k.x509) }, codes.InvalidArgument, autherr.ErrBadSignature},
		{"alg does not fit key", func(r *agentauthv1.AttestRequest) { r.WitAlg = "ES384" }, codes.InvalidArgument, autherr.ErrUnsupportedAlg},
		{"EdDSA", func(r *agentauthv1.AttestRequest) { r.WitAlg = "EdDSA" }, codes.InvalidArgument, autherr.ErrUnsupportedAlg},
		// An Ed25519 key that fits EdDSA, which the default policy (the WIT-SVID profile) does not certify.
		{"EdDSA outside the policy", func(r *agentauthv1.AttestRequest) {
			r.WitPublicKey, r.WitAlg = spkiOf(t, edPub), "EdDSA"
		}, codes.InvalidArgument, autherr.ErrUnsupportedAlg},
		{"private JWK", func(r *agentauthv1.AttestRequest) { r.WitPublicKey = privateJWK(t, k.wit) }, codes.InvalidArgument, autherr.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := k.attest(t, token)
			tt.mutate(req)
			_, err := c.Attest(ctx, req)
			wantCode(t, err, tt.code, tt.reason)
		})
	}
	// None of the bad requests burned the token.
	if _, err := c.Attest(ctx, k.attest(t, token)); err != nil {
		t.Fatalf("token unusable after refused requests: %v", err)
	}

	// An expired token.
	old, err := f.ca.CreateJoinToken(ctx, id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(2 * time.Minute)
	before := f.store.issuedCount()
	_, err = c.Attest(ctx, k.attest(t, old))
	wantCode(t, err, codes.PermissionDenied, autherr.ErrDenied)
	if f.store.issuedCount() != before {
		t.Fatal("an expired token issued a certificate")
	}
}

func TestAttestWithJWKAndWithoutWIT(t *testing.T) {
	f := newFixture(t)
	addr := startIssuer(t, f.ca)
	ctx := context.Background()
	c := dial(t, addr, f.ca.X509Bundle(), nil)
	id := spiffeid.RequireFromString("spiffe://example.org/agent/b")

	k := newKeys(t)
	tok, _ := f.ca.CreateJoinToken(ctx, id, time.Hour)
	req := k.attest(t, tok)
	req.WitPublicKey = publicJWK(t, k.wit, "ES256")
	creds, err := c.Attest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	k.verify(t, creds)

	tok, _ = f.ca.CreateJoinToken(ctx, id, time.Hour)
	req = k.attest(t, tok)
	req.WitPublicKey, req.WitAlg = nil, ""
	creds, err = c.Attest(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if creds.GetWit() != "" {
		t.Error("a WIT was issued without a WIT key")
	}
	if _, err := issuerclient.VerifyCredentials(creds, k.x509.Public(), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestLocalPeerCredentials(t *testing.T) {
	f := newFixture(t)
	id := spiffeid.RequireFromString("spiffe://example.org/local/me")
	dir, err := os.MkdirTemp("", "issuer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	run := func(peerIDs map[uint32]spiffeid.ID) *issuerclient.Client {
		g, err := NewLocalGRPCServer(f.ca, ServiceConfig{PeerIDs: peerIDs})
		if err != nil {
			t.Fatal(err)
		}
		sock := filepath.Join(dir, "s"+time.Now().Format("150405.000000000"))
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = g.Serve(ln) }()
		t.Cleanup(g.Stop)
		cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(local.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return issuerclient.NewClient(cc)
	}
	ctx := context.Background()
	k := newKeys(t)

	creds, err := run(map[uint32]spiffeid.ID{uint32(os.Getuid()): id}).Attest(ctx, k.attest(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if is := k.verify(t, creds); is.ID != id {
		t.Fatalf("peer-credential attestation issued %v, want %v", is.ID, id)
	}

	before := f.store.issuedCount()
	_, err = run(map[uint32]spiffeid.ID{uint32(os.Getuid()) + 1: id}).Attest(ctx, k.attest(t, ""))
	wantCode(t, err, codes.PermissionDenied, autherr.ErrDenied)
	if f.store.issuedCount() != before {
		t.Fatal("an unmapped uid got a certificate")
	}
}

func TestBoltStoreJoinTokens(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keysDir := t.TempDir()
	open := func() *CA {
		keys, err := NewFileKeyStore(keysDir)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: NewBoltStore(st)})
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	ca := open()
	if !open().Root().Equal(ca.Root()) {
		t.Fatal("the bbolt store did not keep the root")
	}
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	tok, err := ca.CreateJoinToken(ctx, id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ca.Attest(ctx, tok); err != nil || got != id {
		t.Fatalf("Attest = %v, %v", got, err)
	}
	if _, err := ca.Attest(ctx, tok); !errors.Is(err, autherr.ErrReplay) {
		t.Fatalf("replay: err = %v", err)
	}
	if _, err := ca.IssueX509SVID(ctx, newP256(t).Public(), id, time.Hour); err != nil {
		t.Fatal(err)
	}
	certs, err := st.IssuedCerts().List()
	if err != nil || len(certs) != 1 || certs[0].GetSpiffeId() != id.String() {
		t.Fatalf("issued certs in store: %v, %v", certs, err)
	}
}

// TestWithheld: a workload whose credentials are withheld gets nothing, neither by join token nor by renewal,
// and others are unaffected.
func TestWithheld(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	b := spiffeid.RequireFromString("spiffe://example.org/agent/b")
	withheld := map[spiffeid.ID]bool{}
	g, err := NewGRPCServer(f.ca, ServiceConfig{Withheld: func(_ context.Context, id spiffeid.ID) (string, bool) {
		return "account disabled", withheld[id]
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, g)
	anon := dial(t, addr, f.ca.X509Bundle(), nil)
	attest := func(id spiffeid.ID) (*keys, *agentauthv1.Credentials, error) {
		tok, err := f.ca.CreateJoinToken(ctx, id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k := newKeys(t)
		creds, err := anon.Attest(ctx, k.attest(t, tok))
		return &k, creds, err
	}
	ka, credsA, err := attest(a)
	if err != nil {
		t.Fatal(err)
	}
	withheld[a] = true
	if _, _, err := attest(a); !errors.Is(err, autherr.ErrRevoked) {
		t.Fatalf("Attest of a withheld workload: %v, want autherr.ErrRevoked", err)
	}
	mtls := dial(t, addr, f.ca.X509Bundle(), ka.svid(ka.verify(t, credsA)))
	_, err = mtls.Renew(ctx, newKeys(t).renew(t))
	wantCode(t, err, codes.PermissionDenied, autherr.ErrRevoked)
	if _, _, err := attest(b); err != nil {
		t.Fatalf("another workload: %v", err)
	}
}

// TestRenewRefused: an SVID that RenewRefused names, by its identity and issue time (e.g. a key reported
// compromised) or by its serial (a revoked certificate), renews nothing; the workload attests again, and what
// that issues renews as usual.
func TestRenewRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	var compromisedBefore time.Time // credentials issued no later than this are compromised
	var revokedSerial string
	g, err := NewGRPCServer(f.ca, ServiceConfig{RenewRefused: func(_ context.Context, id spiffeid.ID, serial string, issuedAt time.Time) (string, bool) {
		return "revoked", (id == a && !issuedAt.After(compromisedBefore)) || serial == revokedSerial
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, g)
	anon := dial(t, addr, f.ca.X509Bundle(), nil)
	attest := func() *x509svid.SVID {
		t.Helper()
		tok, err := f.ca.CreateJoinToken(ctx, a, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		k := newKeys(t)
		creds, err := anon.Attest(ctx, k.attest(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		return k.svid(k.verify(t, creds))
	}
	renew := func(svid *x509svid.SVID) error {
		_, err := dial(t, addr, f.ca.X509Bundle(), svid).Renew(ctx, newKeys(t).renew(t))
		return err
	}
	stolen := attest()
	if err := renew(stolen); err != nil {
		t.Fatalf("renewal before any compromise: %v", err)
	}
	compromisedBefore = f.clock.Now()
	f.clock.Add(20 * time.Second) // less than the backdate, so what is issued now is valid in real time
	wantCode(t, renew(stolen), codes.PermissionDenied, autherr.ErrRevoked)
	fresh := attest()
	if err := renew(fresh); err != nil {
		t.Fatalf("renewal with credentials attested after the compromise: %v", err)
	}
	revokedSerial = hex.EncodeToString(fresh.Certificates[0].SerialNumber.Bytes())
	wantCode(t, renew(fresh), codes.PermissionDenied, autherr.ErrRevoked)
}

// TestReservedIDsAreNeverIssued: the issuer's and the controller's own identities (which sidecars trust to serve
// them policies and revocations) come from no join token, no attestation (not even with a token already in the
// store), no peer-credential mapping and no renewal.
func TestReservedIDsAreNeverIssued(t *testing.T) {
	ctx := context.Background()
	for _, id := range []spiffeid.ID{
		spiffeid.RequireFromString("spiffe://example.org/agentauth/issuer"),
		spiffeid.RequireFromString("spiffe://example.org/agentauth/controller"),
	} {
		t.Run(id.Path(), func(t *testing.T) {
			f := newFixture(t)
			addr := startIssuer(t, f.ca)
			if _, err := f.ca.CreateJoinToken(ctx, id, time.Hour); !errors.Is(err, autherr.ErrDenied) {
				t.Fatalf("CreateJoinToken(%v): err = %v, want autherr.ErrDenied", id, err)
			}
			if _, err := NewLocalGRPCServer(f.ca, ServiceConfig{PeerIDs: map[uint32]spiffeid.ID{1000: id}}); err == nil {
				t.Fatalf("PeerIDs mapping a uid to %v was accepted", id)
			}

			// A token that is in the store anyway (made before the ID was reserved, or planted).
			const planted = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
			if err := f.store.PutJoinToken(ctx, &agentauthv1.JoinToken{Id: hashJoinToken(planted), SpiffeId: id.String(),
				Expires: timestamppb.New(f.clock.Now().Add(time.Hour))}); err != nil {
				t.Fatal(err)
			}
			before := f.store.issuedCount()
			_, err := dial(t, addr, f.ca.X509Bundle(), nil).Attest(ctx, newKeys(t).attest(t, planted))
			wantCode(t, err, codes.PermissionDenied, autherr.ErrDenied)

			// An SVID for the ID, as the controller holds one (issued by the CA directly), renews nothing.
			k := newKeys(t)
			chain, err := f.ca.IssueX509SVID(ctx, k.x509.Public(), id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			before++
			held := &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: k.x509}
			_, err = dial(t, addr, f.ca.X509Bundle(), held).Renew(ctx, newKeys(t).renew(t))
			wantCode(t, err, codes.PermissionDenied, autherr.ErrDenied)
			if n := f.store.issuedCount(); n != before {
				t.Fatalf("%d certificates issued for %v", n-before, id)
			}
		})
	}
}

// failingStore fails RecordIssued for workloads (not for the issuer's own certificate) as a disk error does,
// with text that names server internals.
type failingStore struct{ *memStore }

func (s failingStore) RecordIssued(ctx context.Context, c *agentauthv1.IssuedCert) error {
	if c.GetSpiffeId() == wire.IssuerID(td).String() {
		return s.memStore.RecordIssued(ctx, c)
	}
	return errors.New("write /var/lib/agentauth/state.db: input/output error")
}

// TestRefusalsKeepDetailFromCallers: Attest callers have proven nothing when they are answered, so an internal
// error reaches them as a generic message (its text goes to the log), and an unknown, spent or expired join token
// gets one and the same refusal (before: each its own reason and message, which told a guessed token from one
// someone had used), with the detail in the log.
func TestRefusalsKeepDetailFromCallers(t *testing.T) {
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://example.org/agent/payments")
	bolt := func(t *testing.T) Store {
		st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return NewBoltStore(st)
	}
	failing := func(*testing.T) Store { return failingStore{newMemStore()} }
	var now *clock

	tests := []struct {
		name   string
		store  func(t *testing.T) Store
		prep   func(t *testing.T, ca *CA, c *issuerclient.Client) string // returns the token to present
		code   codes.Code
		reason error
		logMsg string // the log entry that must carry the detail
		logged string // the detail that must be in the log and not in the answer
	}{
		{"internal error", failing, func(t *testing.T, ca *CA, _ *issuerclient.Client) string {
			tok, err := ca.CreateJoinToken(ctx, id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, codes.Internal, nil, "issuer: request failed", "/var/lib/agentauth"},
		{"unknown token", bolt, func(t *testing.T, _ *CA, _ *issuerclient.Client) string {
			return strings.Repeat("A", joinTokenLen)
		}, codes.PermissionDenied, autherr.ErrDenied, "issuer: join token refused", "unknown join token"},
		{"spent token", bolt, func(t *testing.T, ca *CA, c *issuerclient.Client) string {
			tok, err := ca.CreateJoinToken(ctx, id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Attest(ctx, newKeys(t).attest(t, tok)); err != nil {
				t.Fatal(err)
			}
			return tok
		}, codes.PermissionDenied, autherr.ErrDenied, "issuer: join token refused", "already used"},
		{"expired token", bolt, func(t *testing.T, ca *CA, _ *issuerclient.Client) string {
			tok, err := ca.CreateJoinToken(ctx, id, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			now.Add(2 * time.Minute)
			return tok
		}, codes.PermissionDenied, autherr.ErrDenied, "issuer: join token refused", "expired"},
	}
	tokenAnswers := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := NewFileKeyStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			now = &clock{t: time.Now()}
			ca, err := New(ctx, Config{TrustDomain: td, Keys: keys, Store: tt.store(t), Now: now.Now})
			if err != nil {
				t.Fatal(err)
			}
			core, logs := observer.New(zap.WarnLevel)
			g, err := NewGRPCServer(ca, ServiceConfig{Logger: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			c := dial(t, serve(t, g), ca.X509Bundle(), nil)
			_, err = c.Attest(ctx, newKeys(t).attest(t, tt.prep(t, ca, c)))
			if status.Code(err) != tt.code || (tt.reason != nil && !errors.Is(err, tt.reason)) {
				t.Fatalf("err = %v, want code %v reason %v", err, tt.code, tt.reason)
			}
			for _, secret := range []string{"/var/lib/agentauth", id.String(), "used at", now.Now().Format("2006-01-02")} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the answer to an unauthenticated caller contains %q: %v", secret, err)
				}
			}
			if entries := logs.FilterMessage(tt.logMsg).All(); len(entries) != 1 ||
				!strings.Contains(entries[0].ContextMap()["error"].(string), tt.logged) {
				t.Errorf("the refusal was not logged with its detail %q: %v", tt.logged, logs.All())
			}
			if errors.Is(err, autherr.ErrDenied) {
				tokenAnswers[status.Convert(err).Message()] = true
			}
		})
	}
	if len(tokenAnswers) != 1 {
		t.Errorf("unknown, spent and expired join tokens are answered differently: %v", tokenAnswers)
	}
}

// TestRequestMetadataIsCapped: Attest needs no client certificate, so request metadata is capped well below
// gRPC's 16 MiB default: a request with a few headers reaches the handler (and is refused there for want of a
// join token), one with more than maxHeaderListSize of them never does.
func TestRequestMetadataIsCapped(t *testing.T) {
	f := newFixture(t)
	c := dial(t, startIssuer(t, f.ca), f.ca.X509Bundle(), nil)
	tests := []struct {
		name        string
		headers     int // of 1 KiB each
		reachesCall bool
	}{
		{"a few headers", 2, true},
		{"over the cap", maxHeaderListSize>>10 + 1, false},
		{"a megabyte", 1 << 10, false},
	}
	pad := strings.Repeat("a", 1<<10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			for range tt.headers {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-pad", pad)
			}
			_, err := c.Attest(ctx, newKeys(t).attest(t, "")) // no join token: refused by the handler
			if reached := errors.Is(err, autherr.ErrMissing); reached != tt.reachesCall {
				t.Fatalf("%d KiB of request headers: reached the handler = %t, want %t (%v)", tt.headers, reached, tt.reachesCall, err)
			}
		})
	}
}

// TestRenewNeedsFreshKeys: a renewal that would certify the presented SVID's key again, as the X.509 key or as
// the WIT key, is refused and issues nothing; with new keys it succeeds.
func TestRenewNeedsFreshKeys(t *testing.T) {
	f := newFixture(t)
	addr := startIssuer(t, f.ca)
	ctx := context.Background()
	token, err := f.ca.CreateJoinToken(ctx, spiffeid.RequireFromString("spiffe://example.org/agent/a"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	held := newKeys(t)
	creds, err := dial(t, addr, f.ca.X509Bundle(), nil).Attest(ctx, held.attest(t, token))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr, f.ca.X509Bundle(), held.svid(held.verify(t, creds)))

	tests := []struct {
		name string
		keys keys
		ok   bool
	}{
		{"same X.509 and WIT keys", held, false},
		{"same X.509 key", keys{x509: held.x509, wit: newP256(t)}, false},
		{"WIT key is the SVID's key", keys{x509: newP256(t), wit: held.x509}, false},
		{"new keys", newKeys(t), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.store.issuedCount()
			creds, err := c.Renew(ctx, tt.keys.renew(t))
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				tt.keys.verify(t, creds)
				return
			}
			wantCode(t, err, codes.InvalidArgument, autherr.ErrReplay)
			if n := f.store.issuedCount(); n != before {
				t.Fatalf("a refused renewal issued %d certificates", n-before)
			}
		})
	}
}
