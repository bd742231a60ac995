package wpt

import (
	"crypto"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// KeySource gives the WIT issuer keys (WIT authorities) of each trusted trust domain, by key ID. A Verifier asks it
// on every request, cached WITs included, so a key it stops returning stops being honoured at once; implementations
// must be safe for concurrent use and cheap — a map lookup, never a copy of a bundle.
type KeySource interface {
	// WITAuthority returns the key with ID kid of trust domain td, or an error when td has no bundle or its bundle
	// has no such key.
	WITAuthority(td spiffeid.TrustDomain, kid string) (crypto.PublicKey, error)
	// WITAuthorities returns every key of td by ID; callers do not modify the map. It serves only WITs without a
	// kid (accepted when td has exactly one key), and only when they are not in the Verifier's cache.
	WITAuthorities(td spiffeid.TrustDomain) (map[string]crypto.PublicKey, error)
}

// FromWITBundles serves WIT authorities from go-spiffe WIT bundles: the keys of a SPIFFE bundle with use
// "wit-svid". A pkg/identity Source, a witbundle.Set and a single witbundle.Bundle are all witbundle.Sources.
func FromWITBundles(s witbundle.Source) KeySource {
	if s == nil {
		return nil
	}
	return witBundles{s}
}

// FromJWTBundles serves WIT authorities from go-spiffe JWT bundles, for sources that publish the WIT issuer's keys
// as JWT authorities (use "jwt-svid") rather than in a WIT bundle.
func FromJWTBundles(s jwtbundle.Source) KeySource {
	if s == nil {
		return nil
	}
	return jwtBundles{s}
}

type witBundles struct{ src witbundle.Source }

func (w witBundles) bundle(td spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	b, err := w.src.GetWITBundleForTrustDomain(td)
	if err == nil && b == nil {
		err = fmt.Errorf("no WIT bundle for trust domain %q", td)
	}
	return b, err
}

func (w witBundles) WITAuthority(td spiffeid.TrustDomain, kid string) (crypto.PublicKey, error) {
	b, err := w.bundle(td)
	if err != nil {
		return nil, err
	}
	if k, ok := b.FindWITAuthority(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("the WIT bundle of trust domain %q has no key %q", td, kid)
}

func (w witBundles) WITAuthorities(td spiffeid.TrustDomain) (map[string]crypto.PublicKey, error) {
	b, err := w.bundle(td)
	if err != nil {
		return nil, err
	}
	return b.WITAuthorities(), nil
}

type jwtBundles struct{ src jwtbundle.Source }

func (j jwtBundles) bundle(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	b, err := j.src.GetJWTBundleForTrustDomain(td)
	if err == nil && b == nil {
		err = fmt.Errorf("no JWT bundle for trust domain %q", td)
	}
	return b, err
}

func (j jwtBundles) WITAuthority(td spiffeid.TrustDomain, kid string) (crypto.PublicKey, error) {
	b, err := j.bundle(td)
	if err != nil {
		return nil, err
	}
	if k, ok := b.FindJWTAuthority(kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("the JWT bundle of trust domain %q has no key %q", td, kid)
}

func (j jwtBundles) WITAuthorities(td spiffeid.TrustDomain) (map[string]crypto.PublicKey, error) {
	b, err := j.bundle(td)
	if err != nil {
		return nil, err
	}
	return b.JWTAuthorities(), nil
}

var (
	_ KeySource = witBundles{}
	_ KeySource = jwtBundles{}
)
