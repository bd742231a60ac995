package wpt

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"
	"github.com/agentauth/agentauth/pkg/autherr"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"
)

// DefaultProofLifetime is the WPT lifetime when ProofParams.Lifetime is zero.
const DefaultProofLifetime = time.Minute

// ProofParams describes the request a WPT is made for.
type ProofParams struct {
	// Audience is the request's target URI without query and fragment, or a configured alias (required).
	Audience string
	// Lifetime sets exp = now + Lifetime; 0 means DefaultProofLifetime.
	Lifetime time.Duration
	// AccessToken is the OAuth access token sent with the request (the value after "Bearer "), bound with ath.
	AccessToken string
	// TxnToken is the Txn-Token header value, bound with tth.
	TxnToken string
	// Other maps further context-token header names to their values, bound with oth.
	Other map[string]string
	// Now is the signing time; zero means time.Now().
	Now time.Time
}

// Prover mints WPTs for one WIT with its private key. It is safe for concurrent use.
type Prover struct {
	wit    string
	wth    string
	expiry time.Time
	signer jose.Signer    // made once; go-jose signers keep no per-signature state
	direct *compactSigner // the same signatures without go-jose's per-call work; nil for keys only go-jose signs
}

// wptClaims is the WPT payload as it travels.
type wptClaims struct {
	Aud string            `json:"aud"`
	Exp int64             `json:"exp"`
	Jti string            `json:"jti"`
	Wth string            `json:"wth"`
	Ath string            `json:"ath,omitempty"`
	Tth string            `json:"tth,omitempty"`
	Oth map[string]string `json:"oth,omitempty"`
}

// NewProver returns a Prover for wit. key must be the private half of the WIT's cnf.jwk; the WPTs use cnf.jwk.alg.
// The WIT's own signature is not checked here (the receiver does that); NewProver only reads cnf and exp from it.
func NewProver(wit string, key crypto.Signer) (*Prover, error) {
	if key == nil {
		return nil, errors.New("wpt: prover key is nil")
	}
	if len(wit) > MaxTokenSize {
		return nil, fmt.Errorf("wpt: %w: WIT is %d bytes, over %d", autherr.ErrTooLarge, len(wit), MaxTokenSize)
	}
	jws, _, err := parseCompact("WIT", wit, supportedAlgs, "an accepted asymmetric algorithm")
	if err != nil {
		return nil, err
	}
	var c witClaims
	if err := unmarshalClaims("WIT", jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, err
	}
	if c.Cnf == nil || len(c.Cnf.JWK) == 0 || c.Exp == nil {
		return nil, fmt.Errorf("wpt: %w: WIT lacks cnf.jwk or exp", autherr.ErrMalformed)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(c.Cnf.JWK, &jwk); err != nil {
		return nil, fmt.Errorf("wpt: %w: WIT cnf.jwk: %v", autherr.ErrMalformed, err)
	}
	if !ijose.Supported(jwk.Algorithm) {
		return nil, fmt.Errorf("wpt: %w: WIT cnf.jwk alg %q", autherr.ErrUnsupportedAlg, jwk.Algorithm)
	}
	if !publicKeyEqual(key.Public(), jwk.Key) {
		return nil, fmt.Errorf("wpt: %w: the private key does not match the WIT's cnf.jwk", autherr.ErrMismatch)
	}
	if err := ijose.CheckAlgKey(jwk.Algorithm, jwk.Key); err != nil {
		return nil, fmt.Errorf("wpt: WIT cnf.jwk: %w", err)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(jwk.Algorithm), Key: signingKey(key)},
		(&jose.SignerOptions{}).WithType(typWPT))
	if err != nil {
		return nil, fmt.Errorf("wpt: prover: %w", err)
	}
	direct, err := newCompactSigner(s, key, jwk.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("wpt: prover: %w", err)
	}
	return &Prover{wit: wit, wth: hashB64(wit), expiry: c.Exp.Time(), signer: s, direct: direct}, nil
}

// WIT returns the WIT this Prover proves possession for, to send as the Workload-Identity-Token header.
func (p *Prover) WIT() string { return p.wit }

// Expiry is the WIT's expiry; Mint fails after it, so callers should have a fresh WIT and Prover by then.
func (p *Prover) Expiry() time.Time { return p.expiry }

// Mint signs a WPT for one request.
func (p *Prover) Mint(pp ProofParams) (string, error) {
	now := pp.Now
	if now.IsZero() {
		now = time.Now()
	}
	if now.After(p.expiry) {
		return "", fmt.Errorf("wpt: %w: WIT expired at %s; not proving with its key", autherr.ErrExpired, p.expiry.UTC().Format(time.RFC3339))
	}
	if pp.Audience == "" {
		return "", fmt.Errorf("wpt: %w: WPT needs an audience", autherr.ErrMalformed)
	}
	lifetime := pp.Lifetime
	if lifetime == 0 {
		lifetime = DefaultProofLifetime
	}
	if lifetime < 0 {
		return "", fmt.Errorf("wpt: %w: negative WPT lifetime %v", autherr.ErrMalformed, lifetime)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("wpt: jti: %w", err)
	}
	c := wptClaims{
		Aud: pp.Audience,
		Exp: now.Add(lifetime).Unix(),
		Jti: base64.RawURLEncoding.EncodeToString(jti[:]),
		Wth: p.wth,
	}
	if pp.AccessToken != "" {
		c.Ath = hashB64(pp.AccessToken)
	}
	if pp.TxnToken != "" {
		c.Tth = hashB64(pp.TxnToken)
	}
	if len(pp.Other) > 0 {
		c.Oth = make(map[string]string, len(pp.Other))
		for name, val := range pp.Other {
			lower := strings.ToLower(name)
			if _, dup := c.Oth[lower]; dup {
				return "", fmt.Errorf("wpt: %w: header %q given twice in Other", autherr.ErrMalformed, lower)
			}
			c.Oth[lower] = hashB64(strings.Trim(val, " \t"))
		}
	}
	payload, err := json.Marshal(&c, json.Deterministic(true))
	if err != nil {
		return "", fmt.Errorf("wpt: encoding WPT claims: %w", err)
	}
	return p.sign(payload)
}

// sign makes the compact JWS of a WPT payload.
func (p *Prover) sign(payload []byte) (string, error) {
	if p.direct != nil {
		wpt, err := p.direct.compact(payload)
		if err != nil {
			return "", fmt.Errorf("wpt: signing WPT: %w", err)
		}
		return wpt, nil
	}
	jws, err := p.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("wpt: signing WPT: %w", err)
	}
	wpt, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("wpt: encoding WPT: %w", err)
	}
	return wpt, nil
}

// hashB64 is base64url(SHA-256(s)) without padding, the form of wth, ath, tth and oth values.
func hashB64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
