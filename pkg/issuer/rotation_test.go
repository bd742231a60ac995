package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
)

// testCATTL: the root prepares its successor 30m after its creation and activates it at 50m (the defaults, 1/2
// and 5/6), or later if the successor has not been published for the 20 minutes between them yet.
const testCATTL = time.Hour

// openRotating opens a CA with a one-hour root on store and the keys in dir, at clk.
func openRotating(t *testing.T, store Store, dir string, clk *clock) *CA {
	t.Helper()
	keys, err := NewFileKeyStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: store, Now: clk.Now, CATTL: testCATTL})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// generationOf returns the generation of set whose root signed leaf, or -1.
func generationOf(ca *CA, leaf *x509.Certificate) int {
	s := ca.set.Load()
	for _, a := range append([]*authority{s.active, s.prepared}, s.retired...) {
		if a != nil && leaf.CheckSignatureFrom(a.root) == nil {
			return a.gen
		}
	}
	return -1
}

func stepsOf(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, string(e.Step)+":"+string(rune('0'+e.Generation)))
	}
	return out
}

// TestRotationSteps walks the CA through two rotations with an injected clock. At each point it checks the steps
// Rotate takes, which generations are in the bundle (X.509 roots and WIT keys), which one signs, and that a CA
// reopened on the same store (a restart) and a second instance that only reloads (a replica) agree.
func TestRotationSteps(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	start := time.Now()
	clk := &clock{t: start}
	ca := openRotating(t, store, dir, clk)
	replica := openRotating(t, store, dir, clk)
	id := spiffeid.RequireFromString("spiffe://example.org/agent")

	for _, tc := range []struct {
		name    string
		at      time.Duration // since start
		steps   []string
		active  int
		bundle  []int // generations in the bundle, in order
		prepare bool  // a prepared root exists
	}{
		{name: "fresh", at: 0, active: 0, bundle: []int{0}},
		{name: "before prepare", at: 29 * time.Minute, active: 0, bundle: []int{0}},
		{name: "prepare", at: 30*time.Minute + time.Second, steps: []string{"prepared:1"}, active: 0, bundle: []int{0, 1}, prepare: true},
		{name: "published, not yet active", at: 49 * time.Minute, active: 0, bundle: []int{0, 1}, prepare: true},
		{name: "activate", at: 51 * time.Minute, steps: []string{"activated:1", "retired:0"}, active: 1, bundle: []int{1, 0}},
		{name: "retired until expiry", at: 59 * time.Minute, active: 1, bundle: []int{1, 0}},
		{name: "drop expired, prepare next", at: 61 * time.Minute, steps: []string{"dropped:0", "prepared:2"}, active: 1, bundle: []int{1, 2}, prepare: true},
		{name: "activate again", at: 82 * time.Minute, steps: []string{"activated:2", "retired:1"}, active: 2, bundle: []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk.mu.Lock()
			clk.t = start.Add(tc.at)
			clk.mu.Unlock()
			events, err := ca.Rotate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := stepsOf(events); !slices.Equal(got, tc.steps) {
				t.Errorf("steps = %v, want %v", got, tc.steps)
			}
			if again, err := ca.Rotate(context.Background()); err != nil || len(again) != 0 {
				t.Errorf("a second Rotate at once = %v, %v; want nothing", stepsOf(again), err)
			}
			if _, err := replica.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
			restarted := openRotating(t, store, dir, clk)
			for name, c := range map[string]*CA{"rotating": ca, "replica": replica, "restarted": restarted} {
				if c.Generation() != tc.active {
					t.Errorf("%s: active generation %d, want %d", name, c.Generation(), tc.active)
				}
				if (c.Prepared() != nil) != tc.prepare {
					t.Errorf("%s: prepared root %v, want one: %v", name, c.Prepared() != nil, tc.prepare)
				}
				var gens []int
				for _, r := range c.Roots() {
					gens = append(gens, generationOf(ca, r)) // a root is self-signed: only its own generation matches
				}
				if !slices.Equal(gens, tc.bundle) {
					t.Errorf("%s: bundle generations %v, want %v", name, gens, tc.bundle)
				}
				if n := len(c.WITBundle().WITAuthorities()); n != len(tc.bundle) {
					t.Errorf("%s: %d WIT keys in the bundle, want %d", name, n, len(tc.bundle))
				}
				if !c.Root().Equal(c.Roots()[0]) {
					t.Errorf("%s: the active root is not first in the bundle", name)
				}
			}
			// The active generation signs X.509-SVIDs, serving certificates and WITs; none outlives its root.
			key := newP256(t)
			chain, err := replica.IssueX509SVID(context.Background(), key.Public(), id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if g := generationOf(ca, chain[0]); g != tc.active {
				t.Errorf("SVID signed by generation %d, want %d", g, tc.active)
			}
			if chain[0].NotAfter.After(ca.Root().NotAfter) {
				t.Errorf("SVID outlives its root: %v > %v", chain[0].NotAfter, ca.Root().NotAfter)
			}
			if _, _, err := x509svid.Verify(chain, ca.X509Bundle(), x509svid.WithTime(clk.Now())); err != nil {
				t.Errorf("SVID does not verify against the bundle: %v", err)
			}
			serving, err := restarted.IssueServingCert(context.Background(), key.Public(), []string{"webhook.example"}, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if g := generationOf(ca, serving[0]); g != tc.active {
				t.Errorf("serving certificate signed by generation %d, want %d", g, tc.active)
			}
			wit, err := ca.IssueWIT(context.Background(), id, key.Public(), "ES256", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSigned(wit, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			a := ca.set.Load().active
			if kid := jws.Signatures[0].Header.KeyID; kid != a.witKID {
				t.Errorf("WIT kid %q, want the active generation's %q", kid, a.witKID)
			}
			if _, err := jws.Verify(a.witKey); err != nil {
				t.Errorf("WIT not signed by the active generation's key: %v", err)
			}
		})
	}
}

// TestRotationLatePrepare: a CA that was not running at the preparation time prepares late, and still publishes
// the successor for the whole window before activating it, unless the active root expires first.
func TestRotationLatePrepare(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	start := time.Now()
	clk := &clock{t: start}
	ca := openRotating(t, store, dir, clk)
	for _, tc := range []struct {
		at    time.Duration
		steps []string
	}{
		{at: 45 * time.Minute, steps: []string{"prepared:1"}},
		// 5/6 of the root's life has passed, but the successor has been published for 5 minutes, not 20.
		{at: 51 * time.Minute},
		{at: 59 * time.Minute},
		// The active root expires: the successor takes over although its window is not over.
		{at: 60 * time.Minute, steps: []string{"activated:1", "retired:0"}},
	} {
		clk.mu.Lock()
		clk.t = start.Add(tc.at)
		clk.mu.Unlock()
		if next := ca.NextRotation(); len(tc.steps) == 0 && !next.After(clk.Now()) {
			t.Errorf("at %v: NextRotation %v is due, but no step is", tc.at, next.Sub(start))
		}
		events, err := ca.Rotate(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := stepsOf(events); !slices.Equal(got, tc.steps) {
			t.Errorf("at %v: steps = %v, want %v", tc.at, got, tc.steps)
		}
	}
}

// TestRotationLegacyRecord: the CA record a controller without rotation stored (one root under "x509", keys
// x509-ca and wit-signing) loads as the active generation 0, and rotates from there.
func TestRotationLegacyRecord(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	clk := &clock{t: time.Now()}
	first := openRotating(t, store, dir, clk)
	if names := store.caNames(); !slices.Equal(names, []string{caRecordName}) {
		t.Fatalf("a new CA stored %v, want only %q", names, caRecordName)
	}
	again := openRotating(t, store, dir, clk)
	if again.Generation() != 0 || !again.Root().Equal(first.Root()) {
		t.Fatal("the stored root is not loaded as the active one")
	}
	clk.Add(testCATTL / 2)
	if _, err := again.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if names := store.caNames(); !slices.Equal(names, []string{caRecordName, caRecordName + ".1"}) {
		t.Errorf("after preparing, the records are %v", names)
	}
}

// TestRotationInconsistentRecords: records that no rotation writes are refused, not guessed at.
func TestRotationInconsistentRecords(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	clk := &clock{t: time.Now()}
	ca := openRotating(t, store, dir, clk)
	clk.Add(testCATTL / 2)
	if _, err := ca.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// An activation record naming another root than its generation's.
	if err := store.PutCAMaterial(context.Background(), rec(activeRecord(1), ca.Root())); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Reload(context.Background()); err == nil {
		t.Error("an activation record for the wrong root was accepted")
	}
}

func rec(name string, c *x509.Certificate) *agentauthv1.CAMaterial {
	return &agentauthv1.CAMaterial{Name: name, CertificatesDer: [][]byte{c.Raw}}
}

// TestRotationMTLSAcrossOverlap runs mTLS over real sockets between a workload holding an SVID of the old root
// and one holding an SVID of the new root, each with the bundle the issuer gave it, across the activation. The
// workload that renewed while the successor was prepared trusts the new root's SVIDs; one whose bundle predates
// the preparation does not, which is why the successor is published before it signs.
func TestRotationMTLSAcrossOverlap(t *testing.T) {
	store, dir := newMemStore(), t.TempDir()
	// The clock runs 55 minutes behind, so that at the activation (52 minutes in) the certificates are valid
	// for the real clock the TLS stack checks with.
	start := time.Now().Add(-55 * time.Minute)
	clk := &clock{t: start}
	ca := openRotating(t, store, dir, clk)
	ctx := context.Background()
	issue := func(name string) (*x509svid.SVID, *x509bundle.Bundle) {
		key := newP256(t)
		id := spiffeid.RequireFromString("spiffe://example.org/" + name)
		chain, err := ca.IssueX509SVID(ctx, key.Public(), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: crypto.Signer(key)}, ca.X509Bundle()
	}
	stale, staleBundle := issue("stale") // before any rotation: its bundle has the first root only
	clk.Add(31 * time.Minute)
	if _, err := ca.Rotate(ctx); err != nil || ca.Prepared() == nil {
		t.Fatalf("prepare: %v", err)
	}
	oldSVID, oldBundle := issue("old") // renewed while the successor was prepared: signed by the old root
	clk.Add(21 * time.Minute)
	if events, err := ca.Rotate(ctx); err != nil || ca.Generation() != 1 {
		t.Fatalf("activate: %v %v", stepsOf(events), err)
	}
	newSVID, newBundle := issue("new") // signed by the new root

	for _, tc := range []struct {
		name                     string
		server, client           *x509svid.SVID
		serverBundle, clientBund *x509bundle.Bundle
		ok                       bool
	}{
		{name: "old serves new", server: oldSVID, serverBundle: oldBundle, client: newSVID, clientBund: newBundle, ok: true},
		{name: "new serves old", server: newSVID, serverBundle: newBundle, client: oldSVID, clientBund: oldBundle, ok: true},
		{name: "old serves old", server: oldSVID, serverBundle: oldBundle, client: stale, clientBund: staleBundle, ok: true},
		{name: "stale bundle refuses new", server: newSVID, serverBundle: newBundle, client: stale, clientBund: staleBundle, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := testca.MTLSEcho(t, tc.server, tc.serverBundle, tc.client, tc.clientBund)
			if (err == nil) != tc.ok {
				t.Fatalf("mTLS err = %v, want success %v", err, tc.ok)
			}
		})
	}
}
