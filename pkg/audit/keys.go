package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"golang.org/x/mod/sumdb/note"
)

// OriginFor is the log origin (and note key name) of a workload's audit log: its SPIFFE ID without the scheme, a
// schema-less URL as the tlog-checkpoint spec recommends. SPIFFE ID paths hold neither spaces nor plus signs.
func OriginFor(id spiffeid.ID) string { return id.TrustDomain().Name() + id.Path() }

// LoadOrCreateKey reads the note signer key in path ("PRIVATE+KEY+name+hash+data"), or creates one for name with
// mode 0600. A key found under another name is an error: the origin of a log never changes.
func LoadOrCreateKey(path, name string) (note.Signer, note.Verifier, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		skey, _, gerr := note.GenerateKey(rand.Reader, name)
		if gerr != nil {
			return nil, nil, fmt.Errorf("audit: generating key: %w", gerr)
		}
		if err := writeFileSync(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, nil, err
		}
		b = []byte(skey)
	} else if err != nil {
		return nil, nil, fmt.Errorf("audit: reading key: %w", err)
	}
	skey := strings.TrimSpace(string(b))
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: key %s: %w", path, err)
	}
	if s.Name() != name {
		return nil, nil, fmt.Errorf("audit: key %s is for %q, not %q", path, s.Name(), name)
	}
	v, err := verifierOf(skey)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: key %s: %w", path, err)
	}
	return s, v, nil
}

// verifierOf derives the verifier of an encoded Ed25519 signer key, the only kind note.NewSigner accepts.
func verifierOf(skey string) (note.Verifier, error) {
	// PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, errors.New("not a note signer key")
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	seed, err := decodeKeyData(parts[4])
	if err != nil {
		return nil, err
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, err
	}
	return NewVerifier(vkey)
}

// verifier is a note.Verifier that remembers its text form.
type verifier struct {
	note.Verifier
	vkey string
}

func (v verifier) String() string { return v.vkey }

// NewVerifier parses a note verifier key ("name+hash+data"); VerifierKey gives the text back.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w", err)
	}
	return verifier{v, strings.TrimSpace(vkey)}, nil
}

func decodeKeyData(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 1+ed25519.SeedSize || b[0] != 1 {
		return nil, errors.New("not an Ed25519 note key")
	}
	return b[1:], nil
}

// VerifierKey is the text form ("name+hash+data") of a verifier made by this package, "" for another.
func VerifierKey(v note.Verifier) string {
	if k, ok := v.(interface{ String() string }); ok {
		return k.String()
	}
	return ""
}

// keyStatement is the payload of a key certificate: the SVID holder vouches, at IssuedAt, for the audit key VKey.
type keyStatement struct {
	VKey     string   `json:"vkey"`
	Subject  string   `json:"sub"`
	IssuedAt int64    `json:"iat"`
	X5C      [][]byte `json:"x5c"` // the SVID chain, DER, leaf first
}

// CertifyKey binds the note verifier key vkey to svid's SPIFFE ID: a compact JWS signed with the SVID's private
// key, carrying the SVID chain. The key's name must be OriginFor the SVID's ID.
func CertifyKey(vkey string, svid *x509svid.SVID, now time.Time) ([]byte, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: certifying key: %w", err)
	}
	if v.Name() != OriginFor(svid.ID) {
		return nil, fmt.Errorf("audit: key name %q is not %q, the origin of %s", v.Name(), OriginFor(svid.ID), svid.ID)
	}
	alg, err := jwsAlg(svid.PrivateKey.Public())
	if err != nil {
		return nil, err
	}
	st := keyStatement{VKey: vkey, Subject: svid.ID.String(), IssuedAt: now.Unix()}
	for _, c := range svid.Certificates {
		st.X5C = append(st.X5C, c.Raw)
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: svid.PrivateKey},
		(&jose.SignerOptions{}).WithType("agentauth-audit-key+jws"))
	if err != nil {
		return nil, fmt.Errorf("audit: certifying key: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("audit: certifying key: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

var certAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.PS256, jose.EdDSA}

func jwsAlg(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return jose.ES256, nil
		case 384:
			return jose.ES384, nil
		case 521:
			return jose.ES512, nil
		}
	case *rsa.PublicKey:
		return jose.RS256, nil
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("audit: unsupported SVID key type %T", pub)
}

// ErrKeyCertificate is wrapped by every failure to verify a key certificate.
var ErrKeyCertificate = errors.New("audit: key certificate not valid")

// VerifyKeyCertificate checks a key certificate made by CertifyKey against the trust bundle: the SVID chain
// verifies at the statement's time, the JWS verifies with the SVID's key, and the key's name is the SVID's origin.
// It returns the certified verifier and the SPIFFE ID that vouched for it.
func VerifyKeyCertificate(cert []byte, bundle x509bundle.Source) (note.Verifier, spiffeid.ID, error) {
	fail := func(format string, a ...any) (note.Verifier, spiffeid.ID, error) {
		return nil, spiffeid.ID{}, fmt.Errorf("%w: %s", ErrKeyCertificate, fmt.Sprintf(format, a...))
	}
	obj, err := jose.ParseSigned(strings.TrimSpace(string(cert)), certAlgs)
	if err != nil || len(obj.Signatures) != 1 {
		return fail("not a compact JWS: %v", err)
	}
	var st keyStatement
	// The chain inside the payload is verified against the bundle first, and the payload then against its leaf.
	if err := json.Unmarshal(obj.UnsafePayloadWithoutVerification(), &st); err != nil {
		return fail("payload: %v", err)
	}
	id, _, err := x509svid.ParseAndVerify(st.X5C, bundle, x509svid.WithTime(time.Unix(st.IssuedAt, 0)))
	if err != nil {
		return fail("SVID chain: %v", err)
	}
	leaf, err := x509.ParseCertificate(st.X5C[0])
	if err != nil {
		return fail("SVID: %v", err)
	}
	payload, err := obj.Verify(leaf.PublicKey)
	if err != nil {
		return fail("signature: %v", err)
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return fail("payload: %v", err)
	}
	if st.Subject != id.String() {
		return fail("subject %q is not the SVID's %s", st.Subject, id)
	}
	v, err := NewVerifier(st.VKey)
	if err != nil {
		return fail("vkey: %v", err)
	}
	if v.Name() != OriginFor(id) {
		return fail("key name %q is not %q, the origin of %s", v.Name(), OriginFor(id), id)
	}
	return v, id, nil
}
