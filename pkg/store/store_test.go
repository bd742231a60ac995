package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "controller.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func revocation(id, spiffeID string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{
		Id:        id,
		Subject:   &agentauthv1.Subject{Kind: "spiffe", Value: spiffeID},
		NotBefore: timestamppb.New(time.Unix(1_760_000_000, 0)),
		Reason:    "credential-compromise",
		Cause:     &agentauthv1.Cause{EventType: "https://schemas.openid.net/secevent/risc/event-type/credential-compromise", SetJti: "set-" + id, Issuer: "https://idp.example"},
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "controller.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol := &agentauthv1.Policy{Id: "p1", Cedar: "permit(principal, action, resource);", Source: "p1.cedar"}
	rev := revocation("r1", "spiffe://example.org/agent/a")
	risk := &agentauthv1.RiskState{Subject: &agentauthv1.Subject{Kind: "user_email", Value: "a@example.org"}, RiskLevel: "HIGH"}
	tb := &agentauthv1.TrustBundle{TrustDomain: "example.org", X509Authorities: [][]byte{{1, 2, 3}}, Sequence: 7}
	cert := &agentauthv1.IssuedCert{Serial: "0a1b", SpiffeId: "spiffe://example.org/agent/a"}
	ca := &agentauthv1.CAMaterial{Name: "x509", CertificatesDer: [][]byte{{4}}, PrivateKeyPkcs8: []byte{5}}
	tok := &agentauthv1.JoinToken{Id: "h1", SpiffeId: "spiffe://example.org/agent/b", Expires: timestamppb.New(time.Now().Add(time.Hour))}
	for _, put := range []func() (uint64, error){
		func() (uint64, error) { return s.Policies().Put(pol) },
		func() (uint64, error) { return s.Revocations().Put(rev) },
		func() (uint64, error) { return s.Risk().Put(risk) },
		func() (uint64, error) { return s.TrustBundles().Put(tb) },
		func() (uint64, error) { return s.IssuedCerts().Put(cert) },
		func() (uint64, error) { return s.CA().Put(ca) },
		func() (uint64, error) { return s.JoinTokens().Put(tok) },
	} {
		if _, err := put(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkSET("https://idp.example", "jti-1", time.Now().Add(time.Hour), time.Now()); err != nil {
		t.Fatal(err)
	}
	v1, err := s.Version()
	if err != nil {
		t.Fatal(err)
	}
	if v1 != 8 {
		t.Fatalf("version after 8 writes = %d", v1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path string
		perm os.FileMode
	}{{path, 0o600}, {filepath.Dir(path), 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.perm {
			t.Errorf("%s mode %v, want %v", c.path, fi.Mode().Perm(), c.perm)
		}
	}

	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if v, _ := s2.Version(); v != v1 {
		t.Errorf("version after reopen %d, want %d", v, v1)
	}
	check := func(name string, got proto.Message, err error, want proto.Message) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	gotPol, err := s2.Policies().Get("p1")
	check("policy", gotPol, err, pol)
	gotRev, err := s2.Revocations().Get("r1")
	check("revocation", gotRev, err, rev)
	gotRisk, err := s2.Risk().Get(risk.GetSubject().Key())
	check("risk", gotRisk, err, risk)
	gotTB, err := s2.TrustBundles().Get("example.org")
	check("bundle", gotTB, err, tb)
	gotCert, err := s2.IssuedCerts().Get("0a1b")
	check("cert", gotCert, err, cert)
	gotCA, err := s2.CA().Get("x509")
	check("ca", gotCA, err, ca)
	gotTok, err := s2.JoinTokens().Get("h1")
	check("token", gotTok, err, tok)
	if err := s2.MarkSET("https://idp.example", "jti-1", time.Now().Add(time.Hour), time.Now()); !errors.Is(err, autherr.ErrReplay) {
		t.Errorf("SET jti after reopen: %v, want autherr.ErrReplay", err)
	}
}

func TestSecondOpenIsLocked(t *testing.T) {
	_, path := openTemp(t)
	_, err := Open(path, Options{LockTimeout: 50 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	t.Log(err)
}

func TestCRUDAndErrors(t *testing.T) {
	s, _ := openTemp(t)
	revs := s.Revocations()
	if _, err := revs.Get("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := revs.Delete("missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := revs.Put(&agentauthv1.Revocation{}); !errors.Is(err, autherr.ErrMalformed) {
		t.Errorf("put without id: %v", err)
	}
	if _, err := s.Risk().Put(&agentauthv1.RiskState{RiskLevel: "HIGH"}); !errors.Is(err, autherr.ErrMalformed) {
		t.Errorf("risk without subject: %v", err)
	}
	v0, _ := s.Version()
	v1, err := revs.Put(revocation("r1", "spiffe://example.org/a"))
	if err != nil || v1 != v0+1 {
		t.Fatalf("put: v=%d err=%v", v1, err)
	}
	// Putting the same value again is not a change.
	if v, err := revs.Put(revocation("r1", "spiffe://example.org/a")); err != nil || v != v1 {
		t.Errorf("idempotent put: v=%d err=%v, want %d", v, err, v1)
	}
	if _, err := revs.Put(revocation("r0", "spiffe://example.org/b")); err != nil {
		t.Fatal(err)
	}
	list, err := revs.List()
	if err != nil || len(list) != 2 || list[0].GetId() != "r0" || list[1].GetId() != "r1" {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := revs.Delete("r0"); err != nil {
		t.Fatal(err)
	}
	if _, err := revs.Get("r0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

func TestReplace(t *testing.T) {
	s, _ := openTemp(t)
	pols := s.Policies()
	var got [][]Change
	cancel := s.Subscribe(func(cs []Change) { got = append(got, cs) })
	defer cancel()
	a := &agentauthv1.Policy{Id: "a", Cedar: "permit(principal, action, resource);"}
	b := &agentauthv1.Policy{Id: "b", Cedar: "forbid(principal, action, resource);"}
	c := &agentauthv1.Policy{Id: "c", Cedar: "permit(principal, action, resource);"}
	if _, err := pols.Replace([]*agentauthv1.Policy{a, b}); err != nil {
		t.Fatal(err)
	}
	if _, err := pols.Replace([]*agentauthv1.Policy{b, c}); err != nil {
		t.Fatal(err)
	}
	// Duplicate ids are refused and nothing changes.
	if _, err := pols.Replace([]*agentauthv1.Policy{a, a}); err == nil {
		t.Fatal("duplicate ids accepted")
	}
	list, err := pols.List()
	if err != nil || len(list) != 2 || list[0].GetId() != "b" || list[1].GetId() != "c" {
		t.Fatalf("list: %v %v", list, err)
	}
	if len(got) != 2 {
		t.Fatalf("notifications: %d, want 2", len(got))
	}
	// The second replace deleted a and added c; b was unchanged.
	var keys []string
	for _, ch := range got[1] {
		keys = append(keys, fmt.Sprintf("%s:%t", ch.Key, ch.Value != nil))
	}
	if fmt.Sprint(keys) != "[a:false c:true]" {
		t.Errorf("second replace changes: %v", keys)
	}
}

func TestDeleteFunc(t *testing.T) {
	s, path := openTemp(t)
	revs := s.Revocations()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := revs.Put(revocation(id, "spiffe://example.org/agent/"+id)); err != nil {
			t.Fatal(err)
		}
	}
	var got []Change
	cancel := s.Subscribe(func(cs []Change) { got = append(got, cs...) })
	defer cancel()
	drop := func(r *agentauthv1.Revocation) bool { return r.GetId() != "b" }
	if n, err := revs.DeleteFunc(drop); err != nil || n != 2 {
		t.Fatalf("DeleteFunc = %d, %v; want 2", n, err)
	}
	if n, err := revs.DeleteFunc(drop); err != nil || n != 0 {
		t.Fatalf("second DeleteFunc = %d, %v; want 0", n, err)
	}
	if len(got) != 2 || got[0].Key != "a" || got[1].Key != "c" || got[0].Value != nil {
		t.Errorf("changes: %+v, want deletions of a and c", got)
	}
	// A value that does not decode fails the call and nothing is deleted.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketRevocations)).Put([]byte("broken"), []byte{0x0a, 0xff})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := revs.DeleteFunc(func(*agentauthv1.Revocation) bool { return true }); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("DeleteFunc over a corrupt value: %v, want ErrCorrupt", err)
	}
	if _, err := revs.Get("b"); err != nil {
		t.Errorf("b after the failed call: %v", err)
	}
	// Durable: a reopened store holds only what was kept.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(BucketRevocations)).Delete([]byte("broken"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if list, err := s2.Revocations().List(); err != nil || len(list) != 1 || list[0].GetId() != "b" {
		t.Fatalf("after reopen: %v, %v", list, err)
	}
}

func TestConcurrentWritersAndOrderedNotifications(t *testing.T) {
	s, _ := openTemp(t)
	var (
		mu       sync.Mutex
		versions []uint64
	)
	cancel := s.Subscribe(func(cs []Change) {
		mu.Lock()
		defer mu.Unlock()
		versions = append(versions, cs[0].Version)
	})
	defer cancel()
	const writers, each = 8, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := s.Revocations().Put(revocation(id, "spiffe://example.org/"+id)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	list, err := s.Revocations().List()
	if err != nil || len(list) != writers*each {
		t.Fatalf("list: %d %v", len(list), err)
	}
	if v, _ := s.Version(); v != writers*each {
		t.Errorf("version %d, want %d", v, writers*each)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, v := range versions {
		if v != uint64(i+1) {
			t.Fatalf("notification %d has version %d: not in commit order", i, v)
		}
	}
}

func TestCorruptValue(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.Policies().Put(&agentauthv1.Policy{Id: "good", Cedar: "permit(principal, action, resource);"}); err != nil {
		t.Fatal(err)
	}
	other, _ := marshal(&agentauthv1.Policy{Id: "someone-else"})
	for key, raw := range map[string][]byte{
		"truncated": {0x0a, 0xff},    // field 1, length-delimited, length varint cut short
		"wrongkey":  other,           // decodes, but names another key
		"badwire":   {0x0f, 0x01, 2}, // wire type 7 does not exist
	} {
		t.Run(key, func(t *testing.T) {
			if err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte(BucketPolicies)).Put([]byte(key), raw)
			}); err != nil {
				t.Fatal(err)
			}
			_, err := s.Policies().Get(key)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("get: %v, want ErrCorrupt", err)
			}
			t.Log(err)
			if _, err := s.Policies().List(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("list: %v, want ErrCorrupt", err)
			}
			if err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte(BucketPolicies)).Delete([]byte(key))
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := s.Policies().Get("good"); err != nil {
		t.Errorf("good value: %v", err)
	}
}

func TestCorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, make([]byte, 64*1024), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if err == nil {
		t.Fatal("opened a file of zeros")
	}
	t.Log(err)
}

func TestMarkSET(t *testing.T) {
	s, _ := openTemp(t)
	now := time.Unix(1_760_000_000, 0)
	tests := []struct {
		name    string
		iss     string
		jti     string
		until   time.Time
		now     time.Time
		wantErr error
	}{
		{"first", "https://a", "j1", now.Add(time.Hour), now, nil},
		{"replay", "https://a", "j1", now.Add(time.Hour), now.Add(time.Minute), autherr.ErrReplay},
		{"same jti other issuer", "https://b", "j1", now.Add(time.Hour), now, nil},
		{"issuer with separator", "https://a|j", "1", now.Add(time.Hour), now, nil},
		{"after keepUntil", "https://a", "j1", now.Add(3 * time.Hour), now.Add(2 * time.Hour), nil},
		{"empty jti", "https://a", "", now, now, autherr.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.MarkSET(tt.iss, tt.jti, tt.until, tt.now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("MarkSET: %v, want %v", err, tt.wantErr)
			}
		})
	}
	n, err := s.PruneSETs(now.Add(150 * time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("prune: %d %v, want 2 (the records of https://b and https://a|j)", n, err)
	}
	if err := s.MarkSET("https://a", "j1", now.Add(4*time.Hour), now.Add(150*time.Minute)); !errors.Is(err, autherr.ErrReplay) {
		t.Errorf("kept record pruned: %v", err)
	}
}

func TestUseJoinToken(t *testing.T) {
	s, _ := openTemp(t)
	now := time.Unix(1_760_000_000, 0)
	for _, tok := range []*agentauthv1.JoinToken{
		{Id: "ok", SpiffeId: "spiffe://example.org/a", Expires: timestamppb.New(now.Add(time.Hour))},
		{Id: "old", SpiffeId: "spiffe://example.org/b", Expires: timestamppb.New(now.Add(-time.Second))},
	} {
		if _, err := s.JoinTokens().Put(tok); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		id      string
		wantErr error
	}{
		{"ok", nil},
		{"ok", autherr.ErrReplay},
		{"old", autherr.ErrExpired},
		{"unknown", autherr.ErrDenied},
		{"", autherr.ErrMalformed},
	}
	for _, tt := range tests {
		got, err := s.UseJoinToken(tt.id, now)
		if tt.wantErr == nil {
			if err != nil || !got.GetUsed() || got.GetSpiffeId() != "spiffe://example.org/a" {
				t.Fatalf("use %q: %v %v", tt.id, got, err)
			}
			continue
		}
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("use %q: %v, want %v", tt.id, err, tt.wantErr)
		}
	}
	tok, err := s.JoinTokens().Get("old")
	if err != nil || tok.GetUsed() {
		t.Errorf("refused token changed: %v %v", tok, err)
	}
}

func TestConcurrentJoinTokenUse(t *testing.T) {
	s, _ := openTemp(t)
	if _, err := s.JoinTokens().Put(&agentauthv1.JoinToken{Id: "t", SpiffeId: "spiffe://example.org/a"}); err != nil {
		t.Fatal(err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseJoinToken("t", time.Now()); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d callers used one join token", wins)
	}
}
