// Command usertoken is a stand-in identity provider for local testing of delegation: it makes an ES256 key and
// its JWK Set (for the controller's tokenService.userIssuers jwksFile) and signs user tokens with it, as an
// OpenID provider signs ID and access tokens. An agent passes such a token as Authorization: Bearer, and its
// egress sidecar exchanges it for a Transaction Token naming the user. Not for production: a real identity
// provider authenticates the user first.
//
//	go run ./examples/usertoken -gen-key idp.pem
//	go run ./examples/usertoken -key idp.pem -print-jwks > idp-jwks.json
//	go run ./examples/usertoken -key idp.pem -iss https://idp.example.com -sub alice@example.com -aud agentauth \
//	    -scope weather.read -ttl 10m -claim department=hr
//
// See docs/delegation.md.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, time.Now()); err != nil {
		fmt.Fprintln(os.Stderr, "usertoken:", err)
		os.Exit(1)
	}
}

// claimFlags collects repeated -claim name=value flags.
type claimFlags map[string]string

func (c claimFlags) String() string { return fmt.Sprint(map[string]string(c)) }

func (c claimFlags) Set(v string) error {
	name, value, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	c[name] = value
	return nil
}

func run(args []string, out io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("usertoken", flag.ContinueOnError)
	var (
		genKey    = fs.String("gen-key", "", "write a new P-256 (ES256) signing key to this file (PKCS#8 PEM, mode 0600) and exit")
		keyFile   = fs.String("key", "", "signing key file, from -gen-key")
		printJWKS = fs.Bool("print-jwks", false, "print the public JWK Set (for tokenService.userIssuers jwksFile) and exit")
		iss       = fs.String("iss", "", "issuer: a tokenService.userIssuers issuer")
		sub       = fs.String("sub", "", "the user (sub)")
		aud       = fs.String("aud", "", "audience, comma-separated: one of that issuer's audiences")
		ttl       = fs.Duration("ttl", 10*time.Minute, "lifetime (exp = now + ttl)")
		scope     = fs.String("scope", "", "space-separated scope claim (default none: the issuer's configured scopes apply)")
		typ       = fs.String("typ", "JWT", "JOSE typ: JWT (an ID token) or at+jwt (an RFC 9068 access token)")
		claims    = claimFlags{}
	)
	fs.Var(claims, "claim", "an extra string claim, name=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *genKey != "" {
		return writeNewKey(*genKey)
	}
	if *keyFile == "" {
		return errors.New("-key is required (create one with -gen-key)")
	}
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	if *printJWKS {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	}
	if *iss == "" || *sub == "" || *aud == "" {
		return errors.New("-iss, -sub and -aud are required")
	}
	if *ttl <= 0 {
		return errors.New("-ttl must be positive")
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType(jose.ContentType(*typ)).WithHeader("kid", key.KeyID))
	if err != nil {
		return err
	}
	extra := map[string]any{}
	for k, v := range claims {
		extra[k] = v
	}
	if *scope != "" {
		extra["scope"] = *scope
	}
	tok, err := jwt.Signed(signer).Claims(extra).Claims(jwt.Claims{
		Issuer:   *iss,
		Subject:  *sub,
		Audience: jwt.Audience(strings.Split(*aud, ",")),
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(*ttl)),
	}).Serialize()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}

func writeNewKey(path string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// loadKey reads a P-256 key; its key id is its RFC 7638 thumbprint, so the JWK Set and the tokens agree on it.
func loadKey(path string) (jose.JSONWebKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return jose.JSONWebKey{}, fmt.Errorf("%s: no PKCS#8 PEM private key", path)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("%s: %w", path, err)
	}
	ec, ok := priv.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return jose.JSONWebKey{}, fmt.Errorf("%s: want a P-256 key for ES256, got %T", path, priv)
	}
	key := jose.JSONWebKey{Key: ec, Algorithm: string(jose.ES256), Use: "sig"}
	pub := key.Public()
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	key.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return key, nil
}
