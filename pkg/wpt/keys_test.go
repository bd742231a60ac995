package wpt

import (
	"context"
	"crypto"
	"testing"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/autherr/autherrtest"
)

func TestKeySources(t *testing.T) {
	key := mustP256(t).Public()
	keys := map[string]crypto.PublicKey{testKID: key}
	other := spiffeid.RequireTrustDomainFromString("other.example")
	for name, ks := range map[string]KeySource{
		"WIT set":    FromWITBundles(witbundle.NewSet(witbundle.FromWITAuthorities(testTD, keys))),
		"WIT bundle": FromWITBundles(witbundle.FromWITAuthorities(testTD, keys)),
		"JWT set":    FromJWTBundles(jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(testTD, keys))),
		"JWT bundle": FromJWTBundles(jwtbundle.FromJWTAuthorities(testTD, keys)),
	} {
		t.Run(name, func(t *testing.T) {
			if k, err := ks.WITAuthority(testTD, testKID); err != nil || !publicKeyEqual(k, key) {
				t.Fatalf("WITAuthority = %v, %v", k, err)
			}
			if all, err := ks.WITAuthorities(testTD); err != nil || len(all) != 1 || !publicKeyEqual(all[testKID], key) {
				t.Fatalf("WITAuthorities = %v, %v", all, err)
			}
			if _, err := ks.WITAuthority(testTD, "k2"); err == nil {
				t.Error("unknown kid found")
			}
			if _, err := ks.WITAuthority(other, testKID); err == nil {
				t.Error("key found in an unknown trust domain")
			}
			if _, err := ks.WITAuthorities(other); err == nil {
				t.Error("keys found for an unknown trust domain")
			}
			// The per-request lookup is a map lookup: no copy of the bundle.
			if n := testing.AllocsPerRun(100, func() { _, _ = ks.WITAuthority(testTD, testKID) }); n != 0 {
				t.Errorf("WITAuthority allocates %v times", n)
			}
		})
	}
	if FromWITBundles(nil) != nil || FromJWTBundles(nil) != nil {
		t.Error("an adapter of a nil source is not nil")
	}
}

// TestWITAndJWTBundlesDiffer: WIT issuer keys are the WIT bundle's, not the JWT bundle's of the same trust domain.
func TestWITAndJWTBundlesDiffer(t *testing.T) {
	e := newEnv(t, "EdDSA")
	jwtKeys := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{testKID: mustP256(t).Public()}))
	ctx := context.Background()
	_, err := e.verifier(t, nil).VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, nil)
	_, err = e.verifier(t, func(c *VerifierConfig) { c.Bundles = FromJWTBundles(jwtKeys) }).VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, autherr.ErrBadSignature)
	// The issuer's key as a JWT authority works through FromJWTBundles, without a kid as well.
	jwtKeys.Add(jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{testKID: e.issuerKey.Public()}))
	v := e.verifier(t, func(c *VerifierConfig) { c.Bundles = FromJWTBundles(jwtKeys) })
	_, err = v.VerifyWIT(ctx, e.wit)
	autherrtest.Check(t, err, nil)
	_, err = v.VerifyWIT(ctx, signJWT(t, e.issuerKey, "ES256", "", witHeader, e.witClaimsMap(t)))
	autherrtest.Check(t, err, nil)
}

// nilBundles is a misbehaving source that returns neither a bundle nor an error.
type nilBundles struct{}

func (nilBundles) GetWITBundleForTrustDomain(spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	return nil, nil
}

func TestNilBundle(t *testing.T) {
	e := newEnv(t, "EdDSA")
	v := e.verifier(t, func(c *VerifierConfig) { c.Bundles = FromWITBundles(nilBundles{}) })
	_, err := v.VerifyWIT(context.Background(), e.wit)
	autherrtest.Check(t, err, autherr.ErrUntrustedIssuer)
}

// TestCacheHitNoAllocs: re-checking a cached WIT (times, and that its issuer key is still trusted) costs map lookups
// and no allocation, whichever adapter serves the keys.
func TestCacheHitNoAllocs(t *testing.T) {
	e := newEnv(t, "EdDSA")
	jwtKeys := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(testTD, map[string]crypto.PublicKey{testKID: e.issuerKey.Public()}))
	for name, ks := range map[string]KeySource{"WIT": FromWITBundles(e.bundles), "JWT": FromJWTBundles(jwtKeys)} {
		t.Run(name, func(t *testing.T) {
			v := e.verifier(t, func(c *VerifierConfig) { c.Bundles = ks })
			if _, err := v.VerifyWIT(context.Background(), e.wit); err != nil {
				t.Fatal(err)
			}
			n := testing.AllocsPerRun(100, func() {
				if _, err := v.verifyWIT(e.wit); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("a WIT cache hit allocates %v times", n)
			}
		})
	}
}
