package identity_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wpt"
)

var (
	issuerTD = spiffeid.RequireTrustDomainFromString("example.org")
	agentID  = spiffeid.RequireFromString("spiffe://example.org/agent/a")
)

// startIssuer runs a real issuer (file keys, bbolt store) on 127.0.0.1 issuing SVIDs that live ttl.
func startIssuer(t *testing.T, ttl time.Duration) (*issuer.CA, string, func()) {
	t.Helper()
	return startIssuerWith(t, ttl, nil)
}

// startIssuerWith is startIssuer with witKeyAlgs as the trust domain's WIT key algorithm policy.
func startIssuerWith(t *testing.T, ttl time.Duration, witKeyAlgs []string) (*issuer.CA, string, func()) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := issuer.NewFileKeyStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := issuer.New(context.Background(), issuer.Config{TrustDomain: issuerTD, Keys: keys, Store: issuer.NewBoltStore(st),
		WITKeyAlgs: witKeyAlgs, WITKeyAlgsSetting: "issuer.witKeyAlgorithms"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := issuer.NewGRPCServer(ca, issuer.ServiceConfig{SVIDTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return ca, ln.Addr().String(), g.Stop
}

func joinToken(t *testing.T, ca *issuer.CA) string {
	t.Helper()
	tok, err := ca.CreateJoinToken(context.Background(), agentID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func serialOf(t *testing.T, src identity.Source) string {
	t.Helper()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.Text(16)
}

// waitRotation waits (generously, to avoid hangs only) until src holds an SVID with another serial than old.
func waitRotation(t *testing.T, src identity.Source, old string) string {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		ch := src.Updated()
		if s := serialOf(t, src); s != old {
			return s
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("no rotation within 60s")
		}
	}
}

func TestIssuerSourceAttestsAndRotates(t *testing.T) {
	ca, addr, _ := startIssuer(t, 4*time.Second)
	var rotations atomic.Int32
	src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
		Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca),
		Observer: identity.ObserverFuncs{OnRotated: func(identity.Status) { rotations.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := identity.Ready(src, true); err != nil {
		t.Fatal(err)
	}
	first, _ := src.GetX509SVID()
	if first.ID != agentID {
		t.Fatalf("SVID for %v, want %v", first.ID, agentID)
	}
	firstWIT, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}

	// The WIT verifies against the source's own bundles with pkg/wpt.
	v, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromWITBundles(src), Replay: replay.New(replay.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := v.VerifyWIT(context.Background(), firstWIT.Token); err != nil || w.Subject != agentID.String() {
		t.Fatalf("WIT: %v, %v", w, err)
	}

	next := waitRotation(t, src, serialOf(t, src))
	second, _ := src.GetX509SVID()
	if second.ID != agentID {
		t.Fatalf("rotated SVID for %v", second.ID)
	}
	if second.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(first.PrivateKey.Public()) {
		t.Error("rotation kept the X.509 key")
	}
	w2, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	if w2.Token == firstWIT.Token || w2.Key == firstWIT.Key {
		t.Error("rotation kept the WIT or its key")
	}
	waitRotation(t, src, next)
	if rotations.Load() < 3 {
		t.Errorf("observer saw %d rotations, want at least 3", rotations.Load())
	}
}

func TestIssuerSourceMTLSAcrossRotations(t *testing.T) {
	ca, addr, _ := startIssuer(t, 4*time.Second)
	src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
		Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	// A server and a client both on the rotating source: the server reports the serial the client presented.
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, r.TLS.PeerCertificates[0].SerialNumber.Text(16))
		}),
		TLSConfig: tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeID(agentID)),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) }()
	defer srv.Close()
	tr := &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(agentID))}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() string {
		t.Helper()
		resp, err := client.Get("https://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	before := get() // the serial this kept-alive connection was set up with
	after := waitRotation(t, src, before)
	if got := get(); got != before { // the kept-alive connection still works with the old handshake
		t.Fatalf("kept-alive connection saw %s, want the old %s", got, before)
	}
	tr.CloseIdleConnections()
	if got := get(); got == before {
		t.Fatalf("a new connection still presented the old SVID %s (source holds %s)", got, after)
	}
}

func TestIssuerSourceRestartRenewsFromStateDir(t *testing.T) {
	ca, addr, _ := startIssuer(t, time.Hour)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca), StateDir: dir}
	src, err := identity.NewIssuerSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := serialOf(t, src)
	src.Close()

	cfg.JoinToken = "" // spent; the saved SVID must be enough
	src2, err := identity.NewIssuerSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	if s := serialOf(t, src2); s == before {
		t.Fatal("restart did not renew")
	}
	if err := identity.Ready(src2, true); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerSourceRefusals(t *testing.T) {
	ca, addr, _ := startIssuer(t, time.Hour)
	tok := joinToken(t, ca)
	if _, err := ca.Attest(context.Background(), tok); err != nil { // someone else used it first
		t.Fatal(err)
	}
	_, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(), JoinToken: tok})
	if !errors.Is(err, autherr.ErrDenied) { // the issuer answers a used token as it does an unknown one
		t.Fatalf("used token: err = %v, want ErrDenied", err)
	}
	_, err = identity.NewIssuerSource(context.Background(), identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle()})
	if !errors.Is(err, autherr.ErrMissing) {
		t.Fatalf("no token: err = %v, want ErrMissing", err)
	}
}

func TestIssuerSourceKeepsCredentialsWhileIssuerIsDown(t *testing.T) {
	ca, addr, stop := startIssuer(t, 4*time.Second)
	failed := make(chan error, 16)
	src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
		Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca),
		RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Observer: identity.ObserverFuncs{OnRotationFailed: func(err error) {
			select {
			case failed <- err:
			default:
			}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	held, _ := src.GetX509SVID()
	stop()
	select {
	case <-failed:
	case <-time.After(60 * time.Second):
		t.Fatal("no failed rotation reported within 60s")
	}
	now, _ := src.GetX509SVID()
	if now != held {
		t.Fatal("a failed rotation replaced the credentials")
	}
}

// A source restarted while the issuer is down serves the saved SVID and WIT, and trusts the saved WIT signing
// keys, so a sidecar still signs and verifies proofs (fail-static).
func TestIssuerSourceRestartWhileIssuerIsDown(t *testing.T) {
	ca, addr, stop := startIssuer(t, time.Hour)
	dir := filepath.Join(t.TempDir(), "state")
	cfg := identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca), StateDir: dir}
	src, err := identity.NewIssuerSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	held, err := src.GetWIT()
	if err != nil {
		t.Fatal(err)
	}
	src.Close()
	stop()

	cfg.JoinToken = ""
	src2, err := identity.NewIssuerSource(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src2.Close()
	if err := identity.Ready(src2, true); err != nil {
		t.Fatalf("restarted while the issuer is down: %v", err)
	}
	w, err := src2.GetWIT()
	if err != nil || w.Token != held.Token {
		t.Fatalf("saved WIT not served: %v", err)
	}
	jb, err := src2.GetJWTBundleForTrustDomain(issuerTD)
	if err != nil || len(jb.JWTAuthorities()) == 0 {
		t.Fatalf("saved WIT signing keys not trusted: %v", err)
	}
}

// TestIssuerSourceEd25519WorkloadKey: with WITAlg EdDSA the source asks for a WIT bound to a fresh Ed25519 key,
// which an issuer whose policy lists EdDSA certifies (and a restart while it is down serves again from StateDir),
// and which an issuer on the default policy refuses, naming its setting, without spending the join token.
func TestIssuerSourceEd25519WorkloadKey(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		ca, addr, stop := startIssuerWith(t, time.Hour, []string{"EdDSA", "ES256"})
		cfg := identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(), JoinToken: joinToken(t, ca),
			StateDir: filepath.Join(t.TempDir(), "state"), WITAlg: "EdDSA"}
		src, err := identity.NewIssuerSource(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		w, err := src.GetWIT()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := w.Key.(ed25519.PrivateKey); !ok || w.Alg != "EdDSA" {
			t.Fatalf("WIT key %T alg %q, want an Ed25519 key and EdDSA", w.Key, w.Alg)
		}
		if svid, _ := src.GetX509SVID(); !isP256(svid.PrivateKey) {
			t.Fatal("X.509-SVID key is not P-256")
		}
		v, err := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromWITBundles(src), Replay: replay.New(replay.Options{}),
			AllowedAlgs: []string{"EdDSA", "ES256"}})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := v.VerifyWIT(context.Background(), w.Token); err != nil || got.Key.Algorithm != "EdDSA" {
			t.Fatalf("WIT: %v, %v", got, err)
		}
		src.Close()
		stop()
		cfg.JoinToken = ""
		src2, err := identity.NewIssuerSource(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer src2.Close()
		if w2, err := src2.GetWIT(); err != nil || w2.Token != w.Token || w2.Alg != "EdDSA" {
			t.Fatalf("saved EdDSA WIT not served after a restart: %v", err)
		}
	})
	t.Run("refused by the policy", func(t *testing.T) {
		ca, addr, _ := startIssuer(t, time.Hour)
		tok := joinToken(t, ca)
		_, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(),
			JoinToken: tok, WITAlg: "EdDSA"})
		if !errors.Is(err, autherr.ErrUnsupportedAlg) || !strings.Contains(err.Error(), "issuer.witKeyAlgorithms") {
			t.Fatalf("err = %v, want unsupported_alg naming issuer.witKeyAlgorithms", err)
		}
		src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{Address: addr, Bundle: ca.X509Bundle(), JoinToken: tok})
		if err != nil {
			t.Fatalf("the join token was spent by the refused request: %v", err)
		}
		src.Close()
		if _, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{Address: addr,
			Bundle: ca.X509Bundle(), WITAlg: "ES384"}); !errors.Is(err, autherr.ErrUnsupportedAlg) {
			t.Fatalf("WITAlg ES384: err = %v, want unsupported_alg", err)
		}
	})
}

func isP256(k crypto.Signer) bool {
	ec, ok := k.(*ecdsa.PrivateKey)
	return ok && ec.Curve == elliptic.P256()
}
