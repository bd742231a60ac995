package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/exp/svid/witsvid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// MaxFileSize caps every credential or bundle file read, so a wrong path (a log, a device) cannot exhaust memory.
const MaxFileSize = 1 << 20

// witAlgs are the issuer signature algorithms the SPIFFE WIT-SVID profile allows.
var witAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", autherr.ErrTooLarge, MaxFileSize)
	}
	return data, nil
}

// parseCertsPEM returns every CERTIFICATE block in data, in order.
func parseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: certificate %d: %v", autherr.ErrMalformed, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", autherr.ErrMalformed)
	}
	return certs, nil
}

// parseKeyPEM reads the first private key block: PKCS#8, SEC 1 (EC PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY).
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%w: no PEM private key block", autherr.ErrMalformed)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", autherr.ErrMalformed, block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: key type %T cannot sign", autherr.ErrMalformed, key)
		}
		return signer, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// checkValidity says whether now is inside the certificate's validity window.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: certificate expired at %s", autherr.ErrExpired, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: certificate valid from %s", autherr.ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// parseSVID builds an X.509-SVID from PEM and checks it against the SPIFFE X.509-SVID profile: key matches the
// leaf, exactly one SPIFFE URI SAN with a path, leaf not a CA, signing certificates are CAs.
func parseSVID(certPEM, keyPEM []byte) (*x509svid.SVID, error) {
	certs, err := parseCertsPEM(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(key.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("%w: private key does not match the leaf certificate's public key", autherr.ErrMismatch)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", autherr.ErrMalformed, err)
	}
	var der []byte
	for _, c := range certs {
		der = append(der, c.Raw...)
	}
	svid, err := x509svid.ParseRaw(der, pkcs8)
	if err != nil {
		return nil, fmt.Errorf("%w: not an X.509-SVID: %v", autherr.ErrMalformed, err)
	}
	return svid, nil
}

// parseBundle reads one bundle file for td: PEM certificates (X.509 authorities), a SPIFFE bundle (JWK Set whose
// keys carry use x509-svid, jwt-svid or wit-svid), or a plain JWK Set without "use" (JWT authorities).
func parseBundle(td spiffeid.TrustDomain, data []byte) (*spiffebundle.Bundle, error) {
	trimmed := bytes.TrimSpace(data)
	if !bytes.HasPrefix(trimmed, []byte("{")) {
		certs, err := parseCertsPEM(data)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if !c.IsCA {
				return nil, fmt.Errorf("%w: bundle certificate %q is not a CA", autherr.ErrMalformed, c.Subject)
			}
		}
		return spiffebundle.FromX509Bundle(x509bundle.FromX509Authorities(td, certs)), nil
	}
	b, err := spiffebundle.Parse(td, trimmed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", autherr.ErrMalformed, err)
	}
	if !b.Empty() {
		return b, nil
	}
	// A SPIFFE bundle with no usable key means "all revoked"; a JWK Set without "use" means JWT authorities.
	jb, err := jwtbundle.Parse(td, trimmed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", autherr.ErrMalformed, err)
	}
	return spiffebundle.FromJWTBundle(jb), nil
}

// addWITIssuers adds every key of the JWK Set data to dst as a WIT authority.
func addWITIssuers(dst *spiffebundle.Bundle, data []byte) error {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(bytes.TrimSpace(data), &set); err != nil {
		return fmt.Errorf("%w: not a JWK Set: %v", autherr.ErrMalformed, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("%w: the JWK Set has no keys", autherr.ErrMalformed)
	}
	for i, k := range set.Keys {
		switch {
		case k.KeyID == "":
			return fmt.Errorf("%w: key %d has no kid (WIT-SVIDs name their issuer key by kid)", autherr.ErrMalformed, i)
		case !k.IsPublic() || !k.Valid():
			return fmt.Errorf("%w: key %q is not a public signing key", autherr.ErrMalformed, k.KeyID)
		}
		if _, clash := dst.FindJWTAuthority(k.KeyID); clash {
			return fmt.Errorf("%w: WIT issuer kid %q is also a jwt-svid kid", autherr.ErrMalformed, k.KeyID)
		}
		if err := dst.AddWITAuthority(k.KeyID, k.Key); err != nil {
			return fmt.Errorf("%w: key %q: %v", autherr.ErrMalformed, k.KeyID, err)
		}
	}
	return nil
}

// mergeBundle adds every authority of src to dst.
func mergeBundle(dst, src *spiffebundle.Bundle) error {
	for _, c := range src.X509Authorities() {
		dst.AddX509Authority(c)
	}
	for kid, k := range src.JWTAuthorities() {
		if err := dst.AddJWTAuthority(kid, k); err != nil {
			return err
		}
	}
	for kid, k := range src.WITAuthorities() {
		if _, clash := dst.FindJWTAuthority(kid); clash {
			return fmt.Errorf("%w: wit-svid kid %q is also a jwt-svid kid", autherr.ErrMalformed, kid)
		}
		if err := dst.AddWITAuthority(kid, k); err != nil {
			return err
		}
	}
	return nil
}

// parseWIT checks a WIT against the SPIFFE WIT-SVID profile (typ wit+jwt, kid, SPIFFE sub, exp, cnf.jwk with alg,
// no aud) and that key is the private half of its cnf.jwk. It does not verify the issuer signature.
func parseWIT(token string, key crypto.Signer, now time.Time) (*WIT, error) {
	tok, err := jwt.ParseSigned(token, witAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: WIT: %v", autherr.ErrMalformed, err)
	}
	var claims struct {
		Expiry *jwt.NumericDate `json:"exp"`
		Cnf    struct {
			JWK struct {
				Alg string `json:"alg"`
			} `json:"jwk"`
		} `json:"cnf"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, fmt.Errorf("%w: WIT claims: %v", autherr.ErrMalformed, err)
	}
	if claims.Expiry != nil && now.After(claims.Expiry.Time()) {
		return nil, fmt.Errorf("%w: WIT expired at %s", autherr.ErrExpired, claims.Expiry.Time().UTC().Format(time.RFC3339))
	}
	if claims.Cnf.JWK.Alg == string(jose.EdDSA) {
		return parseWIMSEWIT(tok, token, key)
	}
	svid, err := witsvid.ParseInsecure(token)
	if err != nil {
		return nil, fmt.Errorf("%w: not a WIT-SVID: %v", autherr.ErrMalformed, err)
	}
	if !publicKeysEqual(key.Public(), svid.PublicKey) {
		return nil, fmt.Errorf("%w: WIT private key does not match cnf.jwk", autherr.ErrMismatch)
	}
	return &WIT{
		Token:   token,
		Key:     key,
		Alg:     claims.Cnf.JWK.Alg,
		Subject: svid.ID.String(),
		Expiry:  svid.Expiry,
	}, nil
}

// parseWIMSEWIT checks a WIT whose workload key is Ed25519 (cnf.jwk.alg EdDSA), which the WIMSE drafts allow and
// the SPIFFE WIT-SVID profile (so go-spiffe's witsvid) does not: the profile's other rules still apply (typ
// wit+jwt, kid, SPIFFE sub, exp, no aud), and key must be the private half of cnf.jwk. Whether EdDSA is allowed at
// all is the configuration's rule, applied by the caller. It does not verify the issuer signature.
func parseWIMSEWIT(tok *jwt.JSONWebToken, token string, key crypto.Signer) (*WIT, error) {
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: WIT has %d signatures, want 1", autherr.ErrMalformed, len(tok.Headers))
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "wit+jwt" {
		return nil, fmt.Errorf("%w: WIT typ is %q, want wit+jwt", autherr.ErrMalformed, typ)
	}
	if h.KeyID == "" {
		return nil, fmt.Errorf("%w: WIT has no kid", autherr.ErrMalformed)
	}
	var claims struct {
		jwt.Claims
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return nil, fmt.Errorf("%w: WIT claims: %v", autherr.ErrMalformed, err)
	}
	id, err := spiffeid.FromString(claims.Subject)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: WIT sub %q is not a SPIFFE ID: %v", autherr.ErrMalformed, claims.Subject, err)
	case claims.Expiry == nil:
		return nil, fmt.Errorf("%w: WIT has no exp", autherr.ErrMalformed)
	case len(claims.Audience) != 0:
		return nil, fmt.Errorf("%w: a WIT-SVID must not carry aud", autherr.ErrMalformed)
	case !claims.Cnf.JWK.IsPublic() || !claims.Cnf.JWK.Valid():
		return nil, fmt.Errorf("%w: WIT cnf.jwk is not a valid public key", autherr.ErrMalformed)
	}
	if pub, ok := claims.Cnf.JWK.Key.(ed25519.PublicKey); !ok || len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: WIT cnf.jwk alg EdDSA with a %T key", autherr.ErrUnsupportedAlg, claims.Cnf.JWK.Key)
	}
	if !publicKeysEqual(key.Public(), claims.Cnf.JWK.Key) {
		return nil, fmt.Errorf("%w: WIT private key does not match cnf.jwk", autherr.ErrMismatch)
	}
	return &WIT{Token: token, Key: key, Alg: string(jose.EdDSA), Subject: id.String(), Expiry: claims.Expiry.Time()}, nil
}

// verifyWIMSEWIT verifies the issuer signature of a WIT that parseWIMSEWIT accepted against the WIT authorities
// of b (where go-spiffe's witsvid.ParseAndValidate would refuse its EdDSA workload key).
func verifyWIMSEWIT(token string, b *witbundle.Bundle) error {
	tok, err := jwt.ParseSigned(token, witAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return fmt.Errorf("WIT: %v", err)
	}
	pub, ok := b.FindWITAuthority(tok.Headers[0].KeyID)
	if !ok {
		return fmt.Errorf("WIT issuer key %q is not in the bundle of %q", tok.Headers[0].KeyID, b.TrustDomain())
	}
	var c jwt.Claims
	if err := tok.Claims(pub, &c); err != nil {
		return fmt.Errorf("WIT signature: %v", err)
	}
	return nil
}
