package issuer

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// memStore is an in-memory Store for unit tests; the real one is BoltStore.
type memStore struct {
	mu     sync.Mutex
	ca     map[string]*agentauthv1.CAMaterial
	issued []*agentauthv1.IssuedCert
	tokens map[string]*agentauthv1.JoinToken
}

func newMemStore() *memStore {
	return &memStore{ca: map[string]*agentauthv1.CAMaterial{}, tokens: map[string]*agentauthv1.JoinToken{}}
}

func (m *memStore) CAMaterial(_ context.Context, name string) (*agentauthv1.CAMaterial, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.ca[name]
	if !ok {
		return nil, fmt.Errorf("mem: %w", ErrNotFound)
	}
	return proto.Clone(c).(*agentauthv1.CAMaterial), nil
}

func (m *memStore) PutCAMaterial(_ context.Context, c *agentauthv1.CAMaterial) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ca[c.GetName()] = proto.Clone(c).(*agentauthv1.CAMaterial)
	return nil
}

// caNames returns the names of the CA records, sorted.
func (m *memStore) caNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.ca))
}

func (m *memStore) RecordIssued(_ context.Context, c *agentauthv1.IssuedCert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.issued = append(m.issued, proto.Clone(c).(*agentauthv1.IssuedCert))
	return nil
}

func (m *memStore) issuedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.issued)
}

func (m *memStore) PutJoinToken(_ context.Context, t *agentauthv1.JoinToken) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.tokens[t.GetId()] = proto.Clone(t).(*agentauthv1.JoinToken)
	return nil
}

func (m *memStore) UseJoinToken(_ context.Context, id string, now time.Time) (*agentauthv1.JoinToken, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	switch {
	case !ok:
		return nil, fmt.Errorf("mem: %w: unknown join token", autherr.ErrDenied)
	case t.GetUsed():
		return nil, fmt.Errorf("mem: %w: join token already used", autherr.ErrReplay)
	case !now.Before(t.GetExpires().AsTime()):
		return nil, fmt.Errorf("mem: %w: join token expired", autherr.ErrExpired)
	}
	t.Used = true
	return proto.Clone(t).(*agentauthv1.JoinToken), nil
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var td = spiffeid.RequireTrustDomainFromString("example.org")

type fixture struct {
	ca    *CA
	store *memStore
	clock *clock
	dir   string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{store: newMemStore(), clock: &clock{t: time.Now()}, dir: t.TempDir()}
	f.ca = f.open(t)
	return f
}

// open creates a CA on the fixture's store and key directory (again, to test reloading).
func (f *fixture) open(t testing.TB) *CA {
	t.Helper()
	keys, err := NewFileKeyStore(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := New(context.Background(), Config{TrustDomain: td, Keys: keys, Store: f.store, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		// Names in the request are ignored by the issuer; this one tries to ask for another identity.
		DNSNames: []string{"evil.example"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func spkiOf(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func csrTemplate(t testing.TB, key crypto.Signer, uris ...*url.URL) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: uris}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// forgedCSR is a well-formed CSR for key whose signature has been altered, so it no longer verifies.
func forgedCSR(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	good := csrFor(t, key)
	req, err := x509.ParseCertificateRequest(good)
	if err != nil {
		t.Fatal(err)
	}
	sig := bytes.Clone(req.Signature)
	sig[len(sig)-1] ^= 0x01 // the last byte of s inside the DER signature
	return bytes.Replace(good, req.Signature, sig, 1)
}

func publicJWK(t testing.TB, k crypto.Signer, alg string) []byte {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k.Public(), Algorithm: alg}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func privateJWK(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: k, Algorithm: "ES256"}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
