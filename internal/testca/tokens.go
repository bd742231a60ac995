package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// WITSVID is a WIT-SVID issued by the CA together with the private key its cnf.jwk confirms.
type WITSVID struct {
	ID     spiffeid.ID
	Token  string        // compact JWS, typ wit+jwt
	Key    crypto.Signer // private half of cnf.jwk
	Alg    string        // cnf.jwk.alg: the algorithm the holder must sign proofs with
	Expiry time.Time
}

// CreateJWTSVID issues a JWT-SVID (ES256, kid = JWTKey's kid) for id and the given audience.
func (ca *CA) CreateJWTSVID(id spiffeid.ID, audience []string, opts ...SVIDOption) string {
	ca.tb.Helper()
	cfg := ca.svidConfig(opts)
	claims := jwt.Claims{
		Subject:   id.String(),
		Audience:  audience,
		Expiry:    jwt.NewNumericDate(cfg.notAfter),
		NotBefore: jwt.NewNumericDate(cfg.notBefore),
		IssuedAt:  jwt.NewNumericDate(time.Now()),
	}
	return ca.sign(ca.jwtKID, ca.jwtKey, "JWT", claims)
}

// CreateWITSVID issues a WIT-SVID for id (ES256, typ wit+jwt, kid = WITKey's kid, no aud) whose cnf.jwk is a
// fresh ECDSA P-256 key, or the key given with WithKey.
func (ca *CA) CreateWITSVID(id spiffeid.ID, opts ...SVIDOption) *WITSVID {
	ca.tb.Helper()
	cfg := ca.svidConfig(opts)
	key := cfg.key
	if key == nil {
		key = newKey(ca.tb)
	}
	alg := algFor(ca.tb, key.Public())
	claims := struct {
		jwt.Claims
		Cnf struct {
			JWK jose.JSONWebKey `json:"jwk"`
		} `json:"cnf"`
	}{}
	claims.Subject = id.String()
	claims.Expiry = jwt.NewNumericDate(cfg.notAfter)
	claims.NotBefore = jwt.NewNumericDate(cfg.notBefore)
	claims.IssuedAt = jwt.NewNumericDate(time.Now())
	claims.ID = randomID(ca.tb)
	claims.Cnf.JWK = jose.JSONWebKey{Key: key.Public(), Algorithm: alg}
	return &WITSVID{
		ID:     id,
		Token:  ca.sign(ca.witKID, ca.witKey, "wit+jwt", claims),
		Key:    key,
		Alg:    alg,
		Expiry: cfg.notAfter.Truncate(time.Second),
	}
}

func (ca *CA) sign(kid string, key crypto.Signer, typ string, claims any) string {
	ca.tb.Helper()
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)),
	)
	if err != nil {
		ca.tb.Fatalf("testca: signer: %v", err)
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		ca.tb.Fatalf("testca: sign %s: %v", typ, err)
	}
	return token
}

// algFor picks the JWS algorithm a holder of pub signs with.
func algFor(tb testing.TB, pub crypto.PublicKey) string {
	tb.Helper()
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return string(jose.ES256)
		case elliptic.P384():
			return string(jose.ES384)
		case elliptic.P521():
			return string(jose.ES512)
		}
	case *rsa.PublicKey:
		return string(jose.PS256)
	case ed25519.PublicKey:
		return string(jose.EdDSA)
	}
	tb.Fatalf("testca: no JWS algorithm for key type %T", pub)
	return ""
}
