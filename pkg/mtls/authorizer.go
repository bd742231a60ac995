package mtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// AuthorizeTrustDomains accepts a peer whose SPIFFE ID is in one of tds. The refusal names the peer and the
// allowed trust domains and wraps autherr.ErrDenied. With no tds it refuses everyone.
func AuthorizeTrustDomains(tds ...spiffeid.TrustDomain) tlsconfig.Authorizer {
	tds = slices.Clone(tds)
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if slices.Contains(tds, id.TrustDomain()) {
			return nil
		}
		return fmt.Errorf("mtls: %w: peer %s: trust domain %q is not one of %v", autherr.ErrDenied, id, id.TrustDomain(), tds)
	}
}

// AuthorizeIDs accepts a peer whose SPIFFE ID is exactly one of ids. The refusal names the peer and the allowed
// IDs and wraps autherr.ErrDenied. With no ids it refuses everyone.
func AuthorizeIDs(ids ...spiffeid.ID) tlsconfig.Authorizer {
	ids = slices.Clone(ids)
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if slices.Contains(ids, id) {
			return nil
		}
		return fmt.Errorf("mtls: %w: peer %s is not one of the allowed IDs %v", autherr.ErrDenied, id, ids)
	}
}

// AnyOf accepts a peer that at least one of authorizers accepts; the refusal joins every reason. With no
// authorizers it refuses everyone.
func AnyOf(authorizers ...tlsconfig.Authorizer) tlsconfig.Authorizer {
	authorizers = slices.Clone(authorizers)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		errs := make([]error, 0, len(authorizers))
		for _, a := range authorizers {
			err := a(id, chains)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return fmt.Errorf("mtls: %w: peer %s: no authorizer configured", autherr.ErrDenied, id)
		}
		return ensureReason(errors.Join(errs...))
	}
}

// AllOf accepts a peer only if every authorizer does; the refusal is the first one's. With no authorizers it
// refuses everyone, so an empty configuration never means "allow all".
func AllOf(authorizers ...tlsconfig.Authorizer) tlsconfig.Authorizer {
	authorizers = slices.Clone(authorizers)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if len(authorizers) == 0 {
			return fmt.Errorf("mtls: %w: peer %s: no authorizer configured", autherr.ErrDenied, id)
		}
		for _, a := range authorizers {
			if err := a(id, chains); err != nil {
				return ensureReason(err)
			}
		}
		return nil
	}
}

// ensureReason makes refusals from go-spiffe's own authorizers (plain errors) carry autherr.ErrDenied too.
func ensureReason(err error) error {
	if autherr.Of(err) != nil {
		return err
	}
	return fmt.Errorf("mtls: %w: %v", autherr.ErrDenied, err)
}
