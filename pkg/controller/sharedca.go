package controller

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/store"
)

// keyRecordPrefix names the CA records that hold the keys of backendKeys: "key:x509-ca", "key:wit-signing", ….
const keyRecordPrefix = "key:"

// backendKeys is the issuer.KeyStore of state.backend kubernetes: each key is a CA record of the shared state
// holding its PKCS#8 encoding, created if absent atomically (store.Collection.Create), so every replica signs
// with the same CA, WIT and Txn-Token keys: the first to start creates each key, the others load it.
type backendKeys struct {
	st store.Backend

	mu   sync.Mutex
	keys map[string]crypto.Signer
}

func newBackendKeys(st store.Backend) *backendKeys {
	return &backendKeys{st: st, keys: map[string]crypto.Signer{}}
}

// Signer implements issuer.KeyStore.
func (b *backendKeys) Signer(name string) (crypto.Signer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.keys[name]; ok {
		return k, nil
	}
	rec := keyRecordPrefix + name
	m, err := b.st.CA().Get(rec)
	if errors.Is(err, store.ErrNotFound) {
		var key *ecdsa.PrivateKey
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("key %q: %w", name, err)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(key)
		if merr != nil {
			return nil, fmt.Errorf("key %q: %w", name, merr)
		}
		// Another replica may create it at the same moment: Create returns whichever key won.
		m, err = b.st.CA().Create(&agentauthv1.CAMaterial{Name: rec, PrivateKeyPkcs8: der})
	}
	if err != nil {
		return nil, fmt.Errorf("key %q in the state: %w", name, err)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(m.GetPrivateKeyPkcs8())
	if err != nil {
		return nil, fmt.Errorf("key %q in the state: %w", name, err)
	}
	signer, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %q in the state is a %T, which cannot sign", name, parsed)
	}
	b.keys[name] = signer
	return signer, nil
}

// errCAFirst: another replica stored the CA certificate first; this one's is discarded and the stored one loaded.
var errCAFirst = errors.New("another replica created the CA certificate first")

// sharedCAStore is the issuer's store over the shared state: the CA certificate is created if absent, so of two
// replicas creating it at once one wins (errCAFirst for the other), and all serve the same trust bundle.
type sharedCAStore struct {
	*issuer.BoltStore
	st store.Backend
}

// PutCAMaterial implements issuer.Store; the CA calls it only to store a record it has just made (a root it has
// created, the activation of a prepared one), never to change one: of two replicas doing the same step at once,
// the second gets errCAFirst and continues from the first's record at its next step.
func (s sharedCAStore) PutCAMaterial(_ context.Context, m *agentauthv1.CAMaterial) error {
	stored, err := s.st.CA().Create(m)
	if err != nil {
		return err
	}
	if !proto.Equal(stored, m) {
		return errCAFirst
	}
	return nil
}

// openCA loads the CA from the state, creating it on first use. With the shared state, a replica that lost the
// race to create the root loads the winner's.
func (c *Controller) openCA(ctx context.Context) (*issuer.CA, error) {
	cfg := issuer.Config{TrustDomain: c.td, Keys: c.keys, Store: issuer.NewBoltStore(c.store),
		CATTL: c.cfg.Issuer.CATTL, Rotation: c.caRotation(),
		WITKeyAlgs: c.cfg.Issuer.WITKeyAlgorithms, WITKeyAlgsSetting: "the controller's issuer.witKeyAlgorithms"}
	if c.bolt != nil {
		return issuer.New(ctx, cfg)
	}
	cfg.Store = sharedCAStore{BoltStore: issuer.NewBoltStore(c.store), st: c.store}
	ca, err := issuer.New(ctx, cfg)
	if errors.Is(err, errCAFirst) {
		c.log.Info("another replica created the CA first; using it")
		return issuer.New(ctx, cfg)
	}
	return ca, err
}

var (
	_ issuer.KeyStore = (*backendKeys)(nil)
	_ issuer.Store    = sharedCAStore{}
)
