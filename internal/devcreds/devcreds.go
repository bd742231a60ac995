// Package devcreds makes throwaway credentials for local testing: a fresh trust domain CA (the controller's own
// built-in issuer, pkg/issuer, run in memory) and, for each workload, the files a sidecar's identity.files source
// reads. The CA's keys are never written: to issue more, make a new set. Not for production.
package devcreds

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/wire"
)

// File names in the output directory.
const (
	BundlePEMFile  = "bundle.pem"  // the CA certificate (X.509 authorities)
	BundleJSONFile = "bundle.json" // SPIFFE bundle: x509-svid and wit-svid keys
	CertFile       = "svid.pem"    // per workload: X.509-SVID leaf
	KeyFile        = "svid_key.pem"
	WITFile        = "wit.jwt" // per workload: WIT-SVID
	WITKeyFile     = "wit_key.pem"
	IdentityFile   = "identity.yaml" // per workload: the sidecar's identity section for these files
)

// Options says what to make.
type Options struct {
	// Dir receives the files; it must not exist yet or be empty, so no real credential is overwritten.
	Dir string
	// TrustDomain of the throwaway CA, e.g. example.org.
	TrustDomain string
	// IDs are the workloads' SPIFFE IDs, all in TrustDomain.
	IDs []string
	// TTL of the SVIDs and WITs; 0 means issuer.DefaultMaxTTL (24h), which is also the most allowed.
	TTL time.Duration
	// WITKeyAlg is the algorithm of the keys the WITs bind (cnf.jwk.alg): ES256 (the default) or EdDSA (Ed25519,
	// which the sidecar accepts under identity.witProfile wimse; the identity sections printed say so).
	WITKeyAlg string
}

// Workload is what was written for one ID.
type Workload struct {
	ID                           spiffeid.ID
	Dir                          string
	Cert, Key, WIT, WITKey, YAML string
}

// Result lists the files written.
type Result struct {
	BundlePEM, BundleJSON string
	Workloads             []Workload
	// WITKeyAlg is Options.WITKeyAlg, defaulted.
	WITKeyAlg string
}

// Write makes the CA and every workload's credentials under opts.Dir: Dir/bundle.pem, Dir/bundle.json and, per
// ID, Dir/<path with / as ->/{svid.pem, svid_key.pem, wit.jwt, wit_key.pem, identity.yaml}. Private keys are
// written 0600.
func Write(ctx context.Context, opts Options) (*Result, error) {
	td, err := spiffeid.TrustDomainFromString(opts.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("devcreds: trust domain: %w", err)
	}
	if len(opts.IDs) == 0 {
		return nil, errors.New("devcreds: name at least one workload SPIFFE ID")
	}
	ttl := opts.TTL
	if ttl <= 0 {
		ttl = issuer.DefaultMaxTTL
	}
	witAlgs := wire.WITAlgs
	switch opts.WITKeyAlg {
	case "", "ES256":
		opts.WITKeyAlg = "ES256"
	case "EdDSA":
		witAlgs = wire.WIMSEWITAlgs
	default:
		return nil, fmt.Errorf("devcreds: WIT key algorithm %q is not ES256 or EdDSA", opts.WITKeyAlg)
	}
	ids := make([]spiffeid.ID, len(opts.IDs))
	seen := map[string]bool{}
	for i, s := range opts.IDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("devcreds: %q: %w", s, err)
		}
		if id.TrustDomain() != td {
			return nil, fmt.Errorf("devcreds: %s is not in trust domain %s", id, td)
		}
		name := dirName(id)
		if id.Path() == "" || seen[name] {
			return nil, fmt.Errorf("devcreds: %s needs a path of its own (files go to a directory named after it)", id)
		}
		seen[name] = true
		ids[i] = id
	}
	if err := emptyDir(opts.Dir); err != nil {
		return nil, err
	}

	ca, err := issuer.New(ctx, issuer.Config{TrustDomain: td, Keys: &memKeys{}, Store: &memStore{}, MaxTTL: ttl, WITKeyAlgs: witAlgs})
	if err != nil {
		return nil, fmt.Errorf("devcreds: %w", err)
	}
	res := &Result{BundlePEM: filepath.Join(opts.Dir, BundlePEMFile), BundleJSON: filepath.Join(opts.Dir, BundleJSONFile),
		WITKeyAlg: opts.WITKeyAlg}
	bundle := spiffebundle.FromX509Bundle(ca.X509Bundle())
	for kid, k := range ca.WITBundle().WITAuthorities() {
		if err := bundle.AddWITAuthority(kid, k); err != nil {
			return nil, fmt.Errorf("devcreds: %w", err)
		}
	}
	doc, err := bundle.Marshal()
	if err != nil {
		return nil, fmt.Errorf("devcreds: bundle: %w", err)
	}
	if err := writeFile(res.BundlePEM, certPEM(ca.Root()), 0o644); err != nil {
		return nil, err
	}
	if err := writeFile(res.BundleJSON, doc, 0o644); err != nil {
		return nil, err
	}
	for _, id := range ids {
		w, err := writeWorkload(ctx, ca, id, ttl, opts.Dir, res)
		if err != nil {
			return nil, err
		}
		res.Workloads = append(res.Workloads, *w)
	}
	return res, nil
}

func writeWorkload(ctx context.Context, ca *issuer.CA, id spiffeid.ID, ttl time.Duration, dir string, res *Result) (*Workload, error) {
	w := &Workload{ID: id, Dir: filepath.Join(dir, dirName(id))}
	w.Cert, w.Key = filepath.Join(w.Dir, CertFile), filepath.Join(w.Dir, KeyFile)
	w.WIT, w.WITKey = filepath.Join(w.Dir, WITFile), filepath.Join(w.Dir, WITKeyFile)
	w.YAML = filepath.Join(w.Dir, IdentityFile)
	if err := os.Mkdir(w.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devcreds: %w", err)
	}
	// Separate keys for the certificate and the WIT, as the issuer hands them out.
	x509Key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devcreds: %w", err)
	}
	var witKey crypto.Signer
	if res.WITKeyAlg == "EdDSA" {
		_, witKey, err = ed25519.GenerateKey(rand.Reader)
	} else {
		witKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, fmt.Errorf("devcreds: %w", err)
	}
	chain, err := ca.IssueX509SVID(ctx, x509Key.Public(), id, ttl)
	if err != nil {
		return nil, fmt.Errorf("devcreds: X.509-SVID for %s: %w", id, err)
	}
	wit, err := ca.IssueWIT(ctx, id, witKey.Public(), res.WITKeyAlg, ttl)
	if err != nil {
		return nil, fmt.Errorf("devcreds: WIT for %s: %w", id, err)
	}
	var chainPEM []byte
	for _, c := range chain {
		chainPEM = append(chainPEM, certPEM(c)...)
	}
	for _, f := range []struct {
		path string
		data func() ([]byte, error)
		mode os.FileMode
	}{
		{w.Key, func() ([]byte, error) { return keyPEM(x509Key) }, 0o600},
		{w.Cert, func() ([]byte, error) { return chainPEM, nil }, 0o644},
		{w.WITKey, func() ([]byte, error) { return keyPEM(witKey) }, 0o600},
		{w.WIT, func() ([]byte, error) { return []byte(wit + "\n"), nil }, 0o600},
		{w.YAML, func() ([]byte, error) { return []byte(IdentityYAML(id.TrustDomain(), *w, res)), nil }, 0o644},
	} {
		b, err := f.data()
		if err == nil {
			err = writeFile(f.path, b, f.mode)
		}
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

// IdentityYAML is the sidecar's identity section for w's files; with EdDSA WIT keys it sets witProfile wimse,
// under which the sidecar allows them.
func IdentityYAML(td spiffeid.TrustDomain, w Workload, res *Result) string {
	profile := ""
	if res.WITKeyAlg == "EdDSA" {
		profile = "\n  witProfile: " + wire.WITProfileWIMSE
	}
	return fmt.Sprintf(`identity:%s
  files:
    cert: %s
    key: %s
    bundles:
      %s: [%s, %s]
    wit: %s
    witKey: %s
`, profile, w.Cert, w.Key, td.Name(), res.BundlePEM, res.BundleJSON, w.WIT, w.WITKey)
}

// dirName is the workload's directory: its ID's path without the leading /, with / as -.
func dirName(id spiffeid.ID) string {
	return strings.ReplaceAll(strings.TrimPrefix(id.Path(), "/"), "/", "-")
}

func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("devcreds: no output directory")
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return os.MkdirAll(dir, 0o700)
	case err != nil:
		return fmt.Errorf("devcreds: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("devcreds: %s is not empty; throwaway credentials go into a new directory", dir)
	}
	return nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("devcreds: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("devcreds: %w", err)
	}
	return nil
}

// memKeys keeps the CA's keys in memory only: the CA is thrown away with the process.
type memKeys struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

func (m *memKeys) Signer(name string) (crypto.Signer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.keys[name]; k != nil {
		return k, nil
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if m.keys == nil {
		m.keys = map[string]crypto.Signer{}
	}
	m.keys[name] = k
	return k, nil
}

// memStore is the CA's state for one run: its root certificate; issued serials are not kept, join tokens refused.
type memStore struct {
	mu sync.Mutex
	ca map[string]*agentauthv1.CAMaterial
}

func (s *memStore) CAMaterial(_ context.Context, name string) (*agentauthv1.CAMaterial, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.ca[name]; m != nil {
		return m, nil
	}
	return nil, fmt.Errorf("%w: CA material %q", issuer.ErrNotFound, name)
}

func (s *memStore) PutCAMaterial(_ context.Context, m *agentauthv1.CAMaterial) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ca == nil {
		s.ca = map[string]*agentauthv1.CAMaterial{}
	}
	s.ca[m.GetName()] = m
	return nil
}

func (s *memStore) RecordIssued(context.Context, *agentauthv1.IssuedCert) error { return nil }

func (s *memStore) PutJoinToken(context.Context, *agentauthv1.JoinToken) error {
	return errors.New("devcreds: no join tokens")
}

func (s *memStore) UseJoinToken(context.Context, string, time.Time) (*agentauthv1.JoinToken, error) {
	return nil, errors.New("devcreds: no join tokens")
}

var (
	_ issuer.KeyStore = (*memKeys)(nil)
	_ issuer.Store    = (*memStore)(nil)
)
