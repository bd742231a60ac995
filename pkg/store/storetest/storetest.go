// Package storetest is the contract every store.Backend keeps, written once and run against each backend (bbolt
// in pkg/store, the Kubernetes API in pkg/store/kubestore).
package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
)

// Open returns a new, empty backend for one subtest; the test's cleanup closes it.
type Open func(t *testing.T) store.Backend

// Run runs the contract against the backends open makes.
func Run(t *testing.T, open Open) {
	for _, c := range collections() {
		t.Run(c.name, func(t *testing.T) { c.run(t, open(t)) })
	}
	t.Run("MarkSET", func(t *testing.T) { testMarkSET(t, open(t)) })
	t.Run("UseJoinToken", func(t *testing.T) { testUseJoinToken(t, open(t)) })
	t.Run("SSFStreamIDs", func(t *testing.T) { testSSFStreamIDs(t, open(t)) })
	t.Run("SwapWitnessed", func(t *testing.T) { testSwapWitnessed(t, open(t)) })
}

type collectionCase struct {
	name string
	run  func(t *testing.T, b store.Backend)
}

func collections() []collectionCase {
	ts := timestamppb.New(time.Unix(1_700_000_000, 0))
	return []collectionCase{
		{"policies", collectionTest(store.Backend.Policies, func(k string, n int) *agentauthv1.Policy {
			return &agentauthv1.Policy{Id: k, Cedar: fmt.Sprintf("permit(principal, action, resource); // %d", n)}
		})},
		{"revocations", collectionTest(store.Backend.Revocations, func(k string, n int) *agentauthv1.Revocation {
			return &agentauthv1.Revocation{Id: k, Reason: fmt.Sprint(n), NotBefore: ts}
		})},
		{"risk", collectionTest(store.Backend.Risk, func(k string, n int) *agentauthv1.RiskState {
			return &agentauthv1.RiskState{Subject: &agentauthv1.Subject{Kind: "spiffe", Value: affix("spiffe://example.org/", k, "")},
				RiskLevel: []string{"LOW", "HIGH"}[n%2]}
		})},
		{"trust_bundles", collectionTest(store.Backend.TrustBundles, func(k string, n int) *agentauthv1.TrustBundle {
			return &agentauthv1.TrustBundle{TrustDomain: affix("", k, ".example"), Sequence: int64(n)}
		})},
		{"issued_certs", collectionTest(store.Backend.IssuedCerts, func(k string, n int) *agentauthv1.IssuedCert {
			return &agentauthv1.IssuedCert{Serial: k, SpiffeId: fmt.Sprintf("spiffe://example.org/%d", n), NotAfter: ts}
		})},
		{"ca", collectionTest(store.Backend.CA, func(k string, n int) *agentauthv1.CAMaterial {
			return &agentauthv1.CAMaterial{Name: k, PrivateKeyPkcs8: []byte{byte(n), 1, 2, 3}}
		})},
		{"join_tokens", collectionTest(store.Backend.JoinTokens, func(k string, n int) *agentauthv1.JoinToken {
			return &agentauthv1.JoinToken{Id: k, SpiffeId: fmt.Sprintf("spiffe://example.org/%d", n), Expires: ts}
		})},
	}
}

// recorder is a subscriber that keeps what it heard.
type recorder struct {
	mu      sync.Mutex
	changes []store.Change
}

func (r *recorder) add(cs []store.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, cs...)
}

// take returns what was heard since the last take.
func (r *recorder) take() []store.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.changes
	r.changes = nil
	return out
}

// collectionTest checks Put, Get, List, Delete, DeleteFunc, Replace, the version and Subscribe of one
// collection. mk(key, n) makes a record whose key is derived from key, differing for each n.
func collectionTest[T proto.Message](coll func(store.Backend) store.Collection[T], mk func(key string, n int) T) func(*testing.T, store.Backend) {
	return func(t *testing.T, b store.Backend) {
		c := coll(b)
		rec := &recorder{}
		t.Cleanup(b.Subscribe(rec.add))
		keyOf := func(v T) string {
			// The key a record is stored under is whatever Get finds it by; find it through List.
			vs, err := c.List()
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range vs {
				if proto.Equal(got, v) {
					return changeKey(t, rec, v)
				}
			}
			t.Fatalf("%v not listed", v)
			return ""
		}
		version := func() uint64 {
			v, err := b.Version()
			if err != nil {
				t.Fatal(err)
			}
			return v
		}

		a1, b1 := mk("a", 1), mk("b", 1)
		v0 := version()
		va, err := c.Put(a1)
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		if va <= v0 || version() < va {
			t.Fatalf("Put returned version %d; before it %d, after it %d", va, v0, version())
		}
		ka := keyOf(a1)
		got, err := c.Get(ka)
		if err != nil || !proto.Equal(got, a1) {
			t.Fatalf("Get(%q) = %v, %v; want %v", ka, got, err, a1)
		}
		if v, err := c.Put(mk("a", 1)); err != nil || v != va {
			t.Fatalf("Put of an unchanged value = %d, %v; want the current version %d", v, err, va)
		}
		if cs := rec.take(); len(cs) != 0 {
			t.Fatalf("an unchanged Put notified %v", cs)
		}
		a2 := mk("a", 2)
		va2, err := c.Put(a2)
		if err != nil || va2 <= va {
			t.Fatalf("Put of a changed value = %d, %v; want a version above %d", va2, err, va)
		}
		expectChanges(t, rec, []store.Change{{Key: ka, Value: a2}})
		if _, err := c.Put(b1); err != nil {
			t.Fatal(err)
		}
		kb := keyOf(b1)
		list, err := c.List()
		if err != nil || len(list) != 2 || !proto.Equal(list[0], a2) || !proto.Equal(list[1], b1) {
			t.Fatalf("List = %v, %v; want [%v %v] in key order", list, err, a2, b1)
		}

		vd, err := c.Delete(ka)
		if err != nil || vd <= va2 {
			t.Fatalf("Delete = %d, %v; want a version above %d", vd, err, va2)
		}
		expectChanges(t, rec, []store.Change{{Key: ka}})
		if _, err := c.Get(ka); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Delete: %v; want ErrNotFound", err)
		}
		if _, err := c.Delete(ka); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Delete of a missing key: %v; want ErrNotFound", err)
		}

		// Replace: b1 stays, c1 and d1 arrive; then DeleteFunc drops c1.
		c1, d1 := mk("c", 1), mk("d", 1)
		if _, err := c.Replace([]T{c1, c1}); err == nil {
			t.Fatal("Replace with a duplicate key succeeded")
		}
		if _, err := c.Replace([]T{d1, b1, c1}); err != nil {
			t.Fatalf("Replace: %v", err)
		}
		kc := keyOf(c1)
		n, err := c.DeleteFunc(func(v T) bool { return proto.Equal(v, c1) })
		if err != nil || n != 1 {
			t.Fatalf("DeleteFunc = %d, %v; want 1", n, err)
		}
		if _, err := c.Get(kc); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after DeleteFunc: %v; want ErrNotFound", err)
		}
		if _, err := c.Replace(nil); err != nil {
			t.Fatal(err)
		}
		if list, err := c.List(); err != nil || len(list) != 0 {
			t.Fatalf("List after Replace(nil) = %v, %v", list, err)
		}
		if _, err := c.Get(kb); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Get after Replace(nil): %v; want ErrNotFound", err)
		}
		if _, err := c.Put(mk("", 1)); err == nil {
			t.Fatal("Put of a record with an empty key succeeded")
		}

		// Create: the first value stays; a second Create gets it back and changes nothing.
		e1, e2 := mk("e", 1), mk("e", 2)
		if got, err := c.Create(e1); err != nil || !proto.Equal(got, e1) {
			t.Fatalf("Create = %v, %v; want %v", got, err, e1)
		}
		ke := changeKey(t, rec, e1)
		if got, err := c.Create(e2); err != nil || !proto.Equal(got, e1) {
			t.Fatalf("Create over a stored value = %v, %v; want the stored %v", got, err, e1)
		}
		if cs := rec.take(); len(cs) != 0 {
			t.Fatalf("a Create that found a value notified %v", cs)
		}
		if got, err := c.Get(ke); err != nil || !proto.Equal(got, e1) {
			t.Fatalf("Get after Create = %v, %v; want %v", got, err, e1)
		}
		// Racing creators all get the one value that won.
		const racers = 4
		won := make([]T, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() { won[i], errs[i] = c.Create(mk("f", i)) })
		}
		wg.Wait()
		for i := range racers {
			if errs[i] != nil || !proto.Equal(won[i], won[0]) {
				t.Fatalf("racer %d got %v, %v; racer 0 got %v", i, won[i], errs[i], won[0])
			}
		}
		if _, err := c.Create(mk("", 1)); err == nil {
			t.Fatal("Create of a record with an empty key succeeded")
		}
	}
}

// changeKey finds the key under which the subscriber heard of v (and forgets what it heard).
func changeKey(t *testing.T, rec *recorder, v proto.Message) string {
	t.Helper()
	for _, ch := range rec.take() {
		if ch.Value != nil && proto.Equal(ch.Value, v) {
			return ch.Key
		}
	}
	t.Fatalf("the subscriber did not hear of %v by the time the write returned", v)
	return ""
}

// expectChanges checks that the subscriber heard exactly want (keys and values; versions only grow) by now.
func expectChanges(t *testing.T, rec *recorder, want []store.Change) {
	t.Helper()
	got := rec.take()
	if len(got) != len(want) {
		t.Fatalf("the subscriber heard %v; want %v", got, want)
	}
	for i := range want {
		if got[i].Key != want[i].Key || !proto.Equal(got[i].Value, want[i].Value) {
			t.Fatalf("change %d = %+v; want %+v", i, got[i], want[i])
		}
		if i > 0 && got[i].Version < got[i-1].Version {
			t.Fatalf("versions go back: %v", got)
		}
	}
}

func testMarkSET(t *testing.T, b store.Backend) {
	now := time.Unix(1_700_000_000, 0)
	steps := []struct {
		name      string
		iss, jti  string
		keepUntil time.Time
		now       time.Time
		wantErr   error
	}{
		{"first delivery", "https://tx.example", "j1", now.Add(time.Hour), now, nil},
		{"second delivery", "https://tx.example", "j1", now.Add(time.Hour), now, autherr.ErrReplay},
		{"same jti, another issuer", "https://other.example", "j1", now.Add(time.Hour), now, nil},
		{"issuer that looks like a separator", "https://tx.example|j1", "", now.Add(time.Hour), now, errAny},
		{"after keepUntil", "https://tx.example", "j1", now.Add(3 * time.Hour), now.Add(2 * time.Hour), nil},
		{"again after re-marking", "https://tx.example", "j1", now.Add(3 * time.Hour), now.Add(2 * time.Hour), autherr.ErrReplay},
	}
	for _, s := range steps {
		err := b.MarkSET(s.iss, s.jti, s.keepUntil, s.now)
		switch {
		case s.wantErr == nil && err != nil, s.wantErr == errAny && err == nil,
			s.wantErr != nil && s.wantErr != errAny && !errors.Is(err, s.wantErr):
			t.Fatalf("%s: MarkSET = %v; want %v", s.name, err, s.wantErr)
		}
	}
	// At now+2h the other issuer's mark (until now+1h) is stale and the re-marked one (until now+3h) is not.
	n, err := b.PruneSETs(now.Add(2 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneSETs = %d, %v; want 1", n, err)
	}
	if err := b.MarkSET("https://other.example", "j1", now.Add(time.Hour), now); err != nil {
		t.Fatalf("MarkSET after its record was pruned: %v", err)
	}
	if err := b.MarkSET("https://tx.example", "j1", now.Add(time.Hour), now); !errors.Is(err, autherr.ErrReplay) {
		t.Fatalf("MarkSET of a record PruneSETs kept: %v; want ErrReplay", err)
	}
}

// affix is prefix+k+suffix, or empty for an empty k (a record without a key).
func affix(prefix, k, suffix string) string {
	if k == "" {
		return ""
	}
	return prefix + k + suffix
}

var errAny = errors.New("any error")

func testUseJoinToken(t *testing.T, b store.Backend) {
	now := time.Unix(1_700_000_000, 0)
	for _, tok := range []*agentauthv1.JoinToken{
		{Id: "fresh", SpiffeId: "spiffe://example.org/a", Expires: timestamppb.New(now.Add(time.Hour))},
		{Id: "old", SpiffeId: "spiffe://example.org/b", Expires: timestamppb.New(now.Add(-time.Second))},
	} {
		if _, err := b.JoinTokens().Put(tok); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		id      string
		wantErr error
	}{
		{"unknown", autherr.ErrDenied},
		{"old", autherr.ErrExpired},
		{"fresh", nil},
		{"fresh", autherr.ErrReplay},
	}
	for _, s := range steps {
		got, err := b.UseJoinToken(s.id, now)
		if s.wantErr != nil {
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("UseJoinToken(%q) = %v; want %v", s.id, err, s.wantErr)
			}
			continue
		}
		if err != nil || !got.GetUsed() || !got.GetUsedAt().AsTime().Equal(now) {
			t.Fatalf("UseJoinToken(%q) = %v, %v; want it marked used at %s", s.id, got, err, now)
		}
		if stored, err := b.JoinTokens().Get(s.id); err != nil || !stored.GetUsed() {
			t.Fatalf("stored token after use = %v, %v", stored, err)
		}
	}
}

func testSSFStreamIDs(t *testing.T, b store.Backend) {
	if id, err := b.SSFStreamID("https://idp.example"); err != nil || id != "" {
		t.Fatalf("unknown transmitter: %q, %v; want \"\"", id, err)
	}
	for _, id := range []string{"stream-1", "stream-2"} {
		if err := b.SetSSFStreamID("https://idp.example", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetSSFStreamID("https://other.example", "s"); err != nil {
		t.Fatal(err)
	}
	if err := b.SetSSFStreamID("https://idp.example", ""); !errors.Is(err, autherr.ErrMalformed) {
		t.Fatalf("empty stream id: %v; want ErrMalformed", err)
	}
	for issuer, want := range map[string]string{"https://idp.example": "stream-2", "https://other.example": "s"} {
		if id, err := b.SSFStreamID(issuer); err != nil || id != want {
			t.Errorf("%s: %q, %v; want %q", issuer, id, err, want)
		}
	}
}

func testSwapWitnessed(t *testing.T, b store.Backend) {
	const id = "spiffe://example.org/agent"
	cp := func(n int) *agentauthv1.WitnessedCheckpoint {
		return &agentauthv1.WitnessedCheckpoint{SpiffeId: id, Checkpoint: []byte(fmt.Sprint(n))}
	}
	// read returns what is stored, swapping nothing.
	read := func() *agentauthv1.WitnessedCheckpoint {
		var got *agentauthv1.WitnessedCheckpoint
		if err := b.SwapWitnessed(id, func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
			got = old
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(); got != nil {
		t.Fatalf("nothing stored yet, next got %v", got)
	}
	if err := b.SwapWitnessed(id, func(*agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
		return cp(0), nil
	}); err != nil {
		t.Fatal(err)
	}
	errMine := errors.New("refused")
	if err := b.SwapWitnessed(id, func(*agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
		return cp(99), errMine
	}); err != errMine {
		t.Fatalf("next's error came back as %v", err)
	}
	if err := b.SwapWitnessed(id, func(*agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
		return &agentauthv1.WitnessedCheckpoint{SpiffeId: "spiffe://example.org/other"}, nil
	}); err == nil {
		t.Fatal("a value naming another sidecar was stored")
	}
	if got := read(); !proto.Equal(got, cp(0)) {
		t.Fatalf("stored %v; want %v (a refused swap changed it)", got, cp(0))
	}
	// Concurrent swaps each see the one before: none is lost.
	const writers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				errs <- b.SwapWitnessed(id, func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error) {
					var n int
					if _, err := fmt.Sscan(string(old.GetCheckpoint()), &n); err != nil {
						return nil, err
					}
					return cp(n + 1), nil
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := read(); !proto.Equal(got, cp(writers*each)) {
		t.Fatalf("after %d concurrent increments: %s", writers*each, got.GetCheckpoint())
	}
}
