package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"path/filepath"
	"sync"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// PEM block types of a TPMKeyStore key file. The private part is encrypted by the TPM's storage root key and is
// useless on any other TPM; the file is still kept at mode 0600.
const (
	pemTPMPublic  = "TPM2B PUBLIC"
	pemTPMPrivate = "TPM2B PRIVATE"
)

// TPMKeyStore keeps keys inside a TPM 2.0: each key is an ECDSA P-256 signing key created under the storage
// root key (SRK) of the owner hierarchy, and only its TPM-wrapped blob is stored on disk. Signing runs TPM2_Sign,
// so the private key never leaves the TPM. The SRK is derived from the owner seed with the TCG reference ECC
// template, so the same TPM re-creates the same SRK after a restart and the blobs load again; clearing the TPM
// makes them unusable.
type TPMKeyStore struct {
	dir string

	// mu serialises TPM commands (a transport carries one command at a time) and guards keys.
	mu   sync.Mutex
	tpm  transport.TPM
	srk  tpm2.NamedHandle
	keys map[string]*tpmSigner
}

// NewTPMKeyStore creates the SRK on tpm (for example linuxtpm.Open("/dev/tpmrm0")) and keeps key blobs in dir
// (created with mode 0700). The owner hierarchy must have an empty authorization value. Close flushes the SRK;
// closing tpm is the caller's job.
func NewTPMKeyStore(tpm transport.TPM, dir string) (*TPMKeyStore, error) {
	if err := prepareKeyDir(dir); err != nil {
		return nil, err
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM: creating the storage root key: %w", err)
	}
	return &TPMKeyStore{
		dir:  dir,
		tpm:  tpm,
		srk:  tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		keys: map[string]*tpmSigner{},
	}, nil
}

// Close flushes the SRK from the TPM. Signers from this store fail afterwards.
func (s *TPMKeyStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil
	}
	_, err := tpm2.FlushContext{FlushHandle: s.srk.Handle}.Execute(s.tpm)
	s.tpm = nil
	return err
}

// Path returns the file that holds (or will hold) the blob of the key called name.
func (s *TPMKeyStore) Path(name string) string { return filepath.Join(s.dir, name+".tpmkey") }

// Signer returns the TPM key called name, creating it in the TPM (and its blob on disk) if the blob file does
// not exist. Blob files that group or others may access are refused, as for FileKeyStore.
func (s *TPMKeyStore) Signer(name string) (crypto.Signer, error) {
	if err := checkKeyName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil, errors.New("issuer: TPM key store is closed")
	}
	if k, ok := s.keys[name]; ok {
		return k, nil
	}
	k, err := s.load(name)
	if errors.Is(err, fs.ErrNotExist) {
		k, err = s.create(name)
	}
	if err != nil {
		return nil, err
	}
	s.keys[name] = k
	return k, nil
}

func (s *TPMKeyStore) load(name string) (*tpmSigner, error) {
	path := s.Path(name)
	data, err := readPrivateFile(path)
	if err != nil {
		return nil, err
	}
	var pubBlock, privBlock *pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case pemTPMPublic:
			pubBlock = b
		case pemTPMPrivate:
			privBlock = b
		}
	}
	if pubBlock == nil || privBlock == nil {
		return nil, fmt.Errorf("issuer: TPM key file %s needs a %q and a %q PEM block", path, pemTPMPublic, pemTPMPrivate)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM key file %s: public part: %w", path, err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privBlock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM key file %s: private part: %w", path, err)
	}
	k, err := s.newSigner(*pub, *priv)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM key file %s: %w", path, err)
	}
	// Load once now so a blob from another TPM (or a cleared one) fails here, not at the first signature.
	h, err := s.loadKey(k)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM key file %s does not load in this TPM: %w", path, err)
	}
	s.flush(h.Handle)
	return k, nil
}

// signingKeyTemplate is an unrestricted ECDSA P-256 signing key; the scheme is left NULL so each TPM2_Sign names
// the hash that the caller's crypto.SignerOpts asks for.
var signingKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID: tpm2.TPMECCNistP256,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

func (s *TPMKeyStore) create(name string) (*tpmSigner, error) {
	rsp, err := tpm2.Create{
		ParentHandle: s.srk,
		InPublic:     tpm2.New2B(signingKeyTemplate),
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM: creating key %q: %w", name, err)
	}
	k, err := s.newSigner(rsp.OutPublic, rsp.OutPrivate)
	if err != nil {
		return nil, err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: pemTPMPublic, Bytes: tpm2.Marshal(rsp.OutPublic)})
	data = append(data, pem.EncodeToMemory(&pem.Block{Type: pemTPMPrivate, Bytes: tpm2.Marshal(rsp.OutPrivate)})...)
	if err := writeNewPrivateFile(s.dir, s.Path(name), data); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return s.load(name)
		}
		return nil, err
	}
	return k, nil
}

func (s *TPMKeyStore) newSigner(public tpm2.TPM2BPublic, private tpm2.TPM2BPrivate) (*tpmSigner, error) {
	pt, err := public.Contents()
	if err != nil {
		return nil, fmt.Errorf("public area: %w", err)
	}
	if pt.Type != tpm2.TPMAlgECC {
		return nil, fmt.Errorf("key type %#x is not ECC", pt.Type)
	}
	pub, err := tpm2.Pub(*pt)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	ec, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is a %T, not ECDSA", pub)
	}
	return &tpmSigner{s: s, pub: ec, public: public, private: private}, nil
}

func (s *TPMKeyStore) loadKey(k *tpmSigner) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.Load{ParentHandle: s.srk, InPublic: k.public, InPrivate: k.private}.Execute(s.tpm)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

func (s *TPMKeyStore) flush(h tpm2.TPMHandle) {
	// A failed flush leaves a transient object behind until the next TPM reset; nothing else depends on it.
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(s.tpm)
}

// tpmSigner is a crypto.Signer whose Sign runs TPM2_Sign. Each signature loads the key and flushes it again, so
// any number of keys works within the TPM's few transient-object slots.
type tpmSigner struct {
	s       *TPMKeyStore
	pub     *ecdsa.PublicKey
	public  tpm2.TPM2BPublic
	private tpm2.TPM2BPrivate
}

func (k *tpmSigner) Public() crypto.PublicKey { return k.pub }

// Sign signs digest, which must have been hashed with opts.HashFunc() (SHA-256, SHA-384 or SHA-512), and returns
// an ASN.1 DER ECDSA signature as crypto.Signer requires.
func (k *tpmSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var alg tpm2.TPMIAlgHash
	switch opts.HashFunc() {
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	default:
		return nil, fmt.Errorf("issuer: TPM key: hash %v is not supported", opts.HashFunc())
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("issuer: TPM key: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	s := k.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tpm == nil {
		return nil, errors.New("issuer: TPM key store is closed")
	}
	h, err := s.loadKey(k)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM: loading key: %w", err)
	}
	defer s.flush(h.Handle)
	rsp, err := tpm2.Sign{
		KeyHandle: h,
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.tpm)
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM2_Sign: %w", err)
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("issuer: TPM2_Sign returned no ECDSA signature: %w", err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

var (
	_ KeyStore      = (*TPMKeyStore)(nil)
	_ crypto.Signer = (*tpmSigner)(nil)
)
