package wpt

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ijose "github.com/agentauth/agentauth/internal/jose"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-json-experiment/json"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/replay"
)

// Defaults for VerifierConfig.
const (
	DefaultClockSkew        = 30 * time.Second
	DefaultMaxProofLifetime = 5 * time.Minute
	DefaultWITCacheSize     = 4096
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Bundles gives the WIT issuer keys of each trusted trust domain, by kid (required): FromWITBundles for go-spiffe
	// WIT bundles (a pkg/identity Source), FromJWTBundles for JWT bundles. It is consulted on every request, so a
	// key removed from a bundle stops being honoured at once, even for cached WITs.
	Bundles KeySource
	// AllowedAlgs lists the JWS algorithms accepted for WIT signatures and for workload keys (cnf.jwk.alg);
	// empty means internal/jose.DefaultAllowedAlgs. Only asymmetric algorithms can be listed.
	AllowedAlgs []string
	// AllowedAlgsSetting, when set, names the configuration AllowedAlgs comes from (e.g. identity.witAlgorithms);
	// a WIT refused for its cnf.jwk.alg says so, so whoever reads the refusal knows what decides it.
	AllowedAlgsSetting string
	// ClockSkew is the leeway for exp, nbf and iat; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// MaxProofLifetime rejects a WPT whose exp is further than this (plus ClockSkew) beyond now; 0 means
	// DefaultMaxProofLifetime. The drafts only say "seconds to minutes".
	MaxProofLifetime time.Duration
	// Replay remembers WPT jti values (required).
	Replay *replay.Cache
	// WITCacheSize bounds the number of verified WITs kept; 0 means DefaultWITCacheSize, negative disables it.
	WITCacheSize int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies WITs and the WPTs made with them. It is safe for concurrent use.
type Verifier struct {
	keys        KeySource
	allowed     map[string]bool           // for cnf.jwk.alg
	allowedAlgs []jose.SignatureAlgorithm // the same, for go-jose's parser
	algsPolicy  string                    // " (by <AllowedAlgsSetting>)", or ""
	skew        time.Duration
	maxLifetime time.Duration
	replay      *replay.Cache
	now         func() time.Time
	cache       *witCache
	// strictClaims decodes every WPT's claims with the strict JSON decoder alone: the reference FuzzProofFastPath
	// compares the flat decoder with.
	strictClaims bool
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Bundles == nil {
		return nil, errors.New("wpt: VerifierConfig.Bundles is required")
	}
	if cfg.Replay == nil {
		return nil, errors.New("wpt: VerifierConfig.Replay is required: a WPT without a replay check is a bearer token for its lifetime")
	}
	if cfg.ClockSkew < 0 || cfg.MaxProofLifetime < 0 {
		return nil, errors.New("wpt: ClockSkew and MaxProofLifetime must not be negative")
	}
	v := &Verifier{
		keys:        cfg.Bundles,
		allowed:     map[string]bool{},
		skew:        cfg.ClockSkew,
		maxLifetime: cfg.MaxProofLifetime,
		replay:      cfg.Replay,
		now:         cfg.Now,
	}
	if cfg.AllowedAlgsSetting != "" {
		v.algsPolicy = " by " + cfg.AllowedAlgsSetting
	}
	algs := cfg.AllowedAlgs
	if len(algs) == 0 {
		algs = ijose.DefaultAllowedAlgs()
	}
	for _, a := range algs {
		if !ijose.Supported(a) {
			return nil, fmt.Errorf("wpt: %w: %q cannot be allowed (asymmetric JWS algorithms only)", autherr.ErrUnsupportedAlg, a)
		}
		if !v.allowed[a] {
			v.allowedAlgs = append(v.allowedAlgs, jose.SignatureAlgorithm(a))
		}
		v.allowed[a] = true
	}
	if v.skew == 0 {
		v.skew = DefaultClockSkew
	}
	if v.maxLifetime == 0 {
		v.maxLifetime = DefaultMaxProofLifetime
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case cfg.WITCacheSize == 0:
		v.cache = newWITCache(DefaultWITCacheSize)
	case cfg.WITCacheSize > 0:
		v.cache = newWITCache(cfg.WITCacheSize)
	}
	return v, nil
}

// verifiedWIT is a WIT plus what is needed to re-check it cheaply and to verify its proofs.
type verifiedWIT struct {
	wit       *WIT
	wth       string           // base64url(SHA-256(wit.Raw))
	kid       string           // issuer key id that verified it (the only key when the WIT had no kid)
	issuerKey crypto.PublicKey // that key, to notice its removal from the bundle
	cnfKey    crypto.PublicKey
	cnfAlgs   []jose.SignatureAlgorithm // just cnf.jwk.alg: the one alg its WPTs may use
	// proofHeader is the header segment of the last WPT whose JWS passed the full checks with cnfKey (verifyFast).
	proofHeader atomic.Pointer[string]
}

// VerifyWIT verifies a WIT (draft-ietf-wimse-workload-creds; specs/wimse-wit-wpt.md §2.3): an allowed asymmetric
// alg, typ wit+jwt, the issuer key chosen by the trust domain of sub and by kid from locally configured bundles, the
// signature, exp/nbf with skew, and a public cnf.jwk whose alg is allowed and fits its key. Verified WITs are cached
// by their exact bytes; a hit re-checks exp/nbf and that the issuer key is still in its bundle. A WIT alone
// authenticates nothing: callers must also verify a proof of possession made with WIT.Key (VerifyRequest does).
func (v *Verifier) VerifyWIT(ctx context.Context, token string) (*WIT, error) {
	vw, err := v.verifyWIT(token)
	if err != nil {
		return nil, err
	}
	return vw.wit, nil
}

func (v *Verifier) verifyWIT(token string) (*verifiedWIT, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("wpt: %w: WIT is %d bytes, over %d", autherr.ErrTooLarge, len(token), MaxTokenSize)
	}
	now := v.now()
	if v.cache != nil {
		if vw := v.cache.get(token); vw != nil {
			if err := v.recheck(vw, now); err != nil {
				return nil, err
			}
			return vw, nil
		}
	}
	vw, err := v.verifyWITFull(token, now)
	if err != nil {
		return nil, err
	}
	if v.cache != nil {
		v.cache.put(vw, now)
	}
	return vw, nil
}

// recheck repeats the checks on a cached WIT that depend on time or on the current bundle.
func (v *Verifier) recheck(vw *verifiedWIT, now time.Time) error {
	if err := v.checkTimes(vw.wit, now); err != nil {
		return err
	}
	k, err := v.keys.WITAuthority(vw.wit.TrustDomain, vw.kid)
	if err != nil {
		return fmt.Errorf("wpt: %w: issuer key %q of trust domain %q is no longer trusted: %v", autherr.ErrUntrustedIssuer, vw.kid, vw.wit.TrustDomain, err)
	}
	if !publicKeyEqual(k, vw.issuerKey) {
		return fmt.Errorf("wpt: %w: issuer key %q of trust domain %q was replaced in its bundle", autherr.ErrUntrustedIssuer, vw.kid, vw.wit.TrustDomain)
	}
	return nil
}

func (v *Verifier) checkTimes(w *WIT, now time.Time) error {
	if now.After(w.Expiry.Add(v.skew)) {
		return fmt.Errorf("wpt: %w: WIT expired at %s", autherr.ErrExpired, w.Expiry.UTC().Format(time.RFC3339))
	}
	if !w.NotBefore.IsZero() && w.NotBefore.After(now.Add(v.skew)) {
		return fmt.Errorf("wpt: %w: WIT not valid before %s", autherr.ErrNotYetValid, w.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

func (v *Verifier) verifyWITFull(token string, now time.Time) (*verifiedWIT, error) {
	jws, hdr, err := parseCompact("WIT", token, v.allowedAlgs, "allowed")
	if err != nil {
		return nil, err
	}
	if !isTyp(headerTyp(hdr), typWIT) {
		return nil, fmt.Errorf("wpt: %w: WIT typ is %v, want %q", autherr.ErrMalformed, hdr.ExtraHeaders[jose.HeaderType], typWIT)
	}
	// The claims are read before the signature is checked only to find the trust domain whose keys must verify
	// it; nothing else in them is used until the signature over these same bytes has verified.
	var c witClaims
	if err := unmarshalClaims("WIT", jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, err
	}
	td, err := parseSubject(c.Sub)
	if err != nil {
		return nil, err
	}
	kid := hdr.KeyID
	var key crypto.PublicKey
	if kid != "" {
		if key, err = v.keys.WITAuthority(td, kid); err != nil {
			return nil, fmt.Errorf("wpt: %w: WIT issuer key %q of trust domain %q: %v", autherr.ErrUntrustedIssuer, kid, td, err)
		}
	} else {
		all, err := v.keys.WITAuthorities(td)
		if err != nil {
			return nil, fmt.Errorf("wpt: %w: WIT issuer keys of trust domain %q: %v", autherr.ErrUntrustedIssuer, td, err)
		}
		if len(all) != 1 {
			return nil, fmt.Errorf("wpt: %w: WIT has no kid and trust domain %q has %d keys", autherr.ErrUntrustedIssuer, td, len(all))
		}
		for k, pub := range all { // the only entry
			kid, key = k, pub
		}
	}
	if err := ijose.CheckAlgKey(hdr.Algorithm, key); err != nil {
		return nil, fmt.Errorf("wpt: WIT issuer key %q: %w", kid, err)
	}
	if _, err := jws.Verify(key); err != nil {
		return nil, fmt.Errorf("wpt: %w: WIT signature does not verify with key %q of trust domain %q", autherr.ErrBadSignature, kid, td)
	}

	w := &WIT{Raw: token, Subject: c.Sub, TrustDomain: td, Issuer: c.Iss, ID: c.Jti, Extra: c.Extra}
	if c.Exp == nil {
		return nil, fmt.Errorf("wpt: %w: WIT has no exp", autherr.ErrMalformed)
	}
	w.Expiry = c.Exp.Time()
	if c.Nbf != nil {
		w.NotBefore = c.Nbf.Time()
	}
	if c.Iat != nil {
		w.IssuedAt = c.Iat.Time()
	}
	if err := v.checkTimes(w, now); err != nil {
		return nil, err
	}
	if len(c.Aud) != 0 && strings.HasPrefix(c.Sub, "spiffe://") {
		return nil, fmt.Errorf("wpt: %w: a WIT-SVID must not carry aud", autherr.ErrMalformed)
	}
	if len(c.Aud) != 0 {
		w.Extra = withClaim(w.Extra, "aud", c.Aud)
	}
	if c.Cnf == nil || len(c.Cnf.JWK) == 0 {
		return nil, fmt.Errorf("wpt: %w: WIT has no cnf.jwk", autherr.ErrMalformed)
	}
	if err := json.Unmarshal(c.Cnf.JWK, &w.Key); err != nil {
		return nil, fmt.Errorf("wpt: %w: WIT cnf.jwk: %v", autherr.ErrMalformed, err)
	}
	if err := v.checkCnfKey(&w.Key); err != nil {
		return nil, err
	}
	return &verifiedWIT{
		wit:       w,
		wth:       hashB64(token),
		kid:       kid,
		issuerKey: key,
		cnfKey:    w.Key.Key,
		cnfAlgs:   []jose.SignatureAlgorithm{jose.SignatureAlgorithm(w.Key.Algorithm)},
	}, nil
}

func withClaim(m map[string]any, name string, raw []byte) map[string]any {
	var val any
	if json.Unmarshal(raw, &val) != nil {
		return m
	}
	if m == nil {
		m = map[string]any{}
	}
	m[name] = val
	return m
}

// checkCnfKey enforces the rules for the workload key: public, with an allowed alg that fits it.
func (v *Verifier) checkCnfKey(k *jose.JSONWebKey) error {
	if _, ok := k.Key.([]byte); ok {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk is a symmetric key", autherr.ErrUnsupportedAlg)
	}
	if !k.IsPublic() {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk carries private key material", autherr.ErrMalformed)
	}
	if !k.Valid() {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk is not a valid key", autherr.ErrMalformed)
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk use is %q, not sig", autherr.ErrMalformed, k.Use)
	}
	if k.Algorithm == "" {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk has no alg", autherr.ErrMalformed)
	}
	if !v.allowed[k.Algorithm] {
		return fmt.Errorf("wpt: %w: WIT cnf.jwk alg %q is not allowed%s", autherr.ErrUnsupportedAlg, k.Algorithm, v.algsPolicy)
	}
	if err := ijose.CheckAlgKey(k.Algorithm, k.Key); err != nil {
		return fmt.Errorf("wpt: WIT cnf.jwk: %w", err)
	}
	return nil
}

// witCache holds verified WITs keyed by the token itself: a hit is an exact byte match by construction, and the
// lookup costs a seeded map hash instead of a SHA-256 per request (the key shares its bytes with WIT.Raw, so it
// costs no extra memory). Hits take only a read lock. When full, expired entries are dropped first, otherwise an
// arbitrary one (Go randomises map order): enough to bound memory and keep hot WITs mostly resident.
type witCache struct {
	mu  sync.RWMutex
	max int
	m   map[string]*verifiedWIT
}

func newWITCache(max int) *witCache {
	return &witCache{max: max, m: make(map[string]*verifiedWIT)}
}

func (c *witCache) get(token string) *verifiedWIT {
	c.mu.RLock()
	vw := c.m[token]
	c.mu.RUnlock()
	return vw
}

func (c *witCache) put(vw *verifiedWIT, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[vw.wit.Raw]; !ok && len(c.m) >= c.max {
		evicted := false
		for k, e := range c.m {
			if now.After(e.wit.Expiry) {
				delete(c.m, k)
				evicted = true
			}
		}
		if !evicted {
			for k := range c.m {
				delete(c.m, k)
				break
			}
		}
	}
	c.m[vw.wit.Raw] = vw
}
