package sidecar

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/oauth"
	"github.com/agentauth/agentauth/pkg/wire"
)

// CheckCredentials opens and parses every file the config names, as the sidecar does when it starts: the
// credential files (identity.files, identity.workloadAPI's wit) with the rules applied to them, the controller's
// bundle and join token, the ingress policy files and the Txn-Token JWKS file. `sidecar -check` thus passes only
// what will start. Call it after Load (which validates); every problem is reported, each naming its field and
// file. Sources that need a network (controller, Workload API) are checked at start.
func CheckCredentials(cfg *Config) error {
	errs := []error{cfg.checkIdentityFiles()}
	if ic := cfg.Identity.Controller; ic != nil {
		if _, err := loadBootstrapBundle(ic.Bundle); err != nil {
			errs = append(errs, fmt.Errorf("identity.controller.bundle: %w", err))
		}
		if _, err := joinToken(ic); err != nil {
			errs = append(errs, err)
		}
	}
	if in := cfg.Ingress; in != nil {
		if in.Policy != nil {
			if _, err := compilePolicyFiles(in.Policy); err != nil {
				errs = append(errs, err)
			}
		}
		if t := in.TxnToken; t != nil && t.JWKSFile != "" {
			if _, err := oauth.NewJWKSFile(t.JWKSFile); err != nil {
				errs = append(errs, fmt.Errorf("ingress.txnToken.jwksFile: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkIdentityFiles loads the credential files of identity.files or identity.workloadAPI and applies the rules
// the sidecar applies to them.
func (c *Config) checkIdentityFiles() error {
	switch id := c.Identity; {
	case id.Files != nil:
		src, err := newFileSource(id.Files, nil)
		if err != nil {
			return err
		}
		defer src.Close()
		return c.checkSource(src)
	case id.WorkloadAPI != nil && id.WorkloadAPI.WIT != "":
		src, err := identity.NewWITFileSource(id.WorkloadAPI.WIT, id.WorkloadAPI.WITKey, nil)
		if err != nil {
			return fmt.Errorf("identity.workloadAPI.wit: %w", err)
		}
		return c.checkOwnWIT(src, "identity.workloadAPI.wit")
	}
	return nil
}

// newFileSource opens the identity.files source.
func newFileSource(f *FilesConfig, obs identity.Observer) (*identity.FileSource, error) {
	tds := func(field string, m map[string][]string) (map[spiffeid.TrustDomain][]string, error) {
		out := map[spiffeid.TrustDomain][]string{}
		for name, files := range m {
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil {
				return nil, fmt.Errorf("identity.files.%s: %w", field, err)
			}
			out[td] = files
		}
		return out, nil
	}
	bundles, err := tds("bundles", f.Bundles)
	if err != nil {
		return nil, err
	}
	witIssuers, err := tds("witIssuers", f.WITIssuers)
	if err != nil {
		return nil, err
	}
	src, err := identity.NewFileSource(identity.FileConfig{
		CertFile: f.Cert, KeyFile: f.Key, Bundles: bundles, WITIssuers: witIssuers, WITFile: f.WIT, WITKeyFile: f.WITKey,
		Observer: obs,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.fieldOf(err), err)
	}
	return src, nil
}

// fieldOf names the identity.files field of the file a load error is about ("identity.files" when it is not one).
func (f *FilesConfig) fieldOf(err error) string {
	var re *identity.ReloadError
	if !errors.As(err, &re) || re.Path == "" {
		return "identity.files"
	}
	for field, path := range map[string]string{"cert": f.Cert, "key": f.Key, "wit": f.WIT, "witKey": f.WITKey} {
		if path == re.Path {
			return "identity.files." + field
		}
	}
	for _, m := range []struct {
		field string
		tds   map[string][]string
	}{{"bundles", f.Bundles}, {"witIssuers", f.WITIssuers}} {
		for td, paths := range m.tds {
			if slices.Contains(paths, re.Path) {
				return "identity.files." + m.field + "." + td
			}
		}
	}
	return "identity.files"
}

// checkSource applies the credential rules to an opened source: our own WIT's algorithm, and for the files
// source, that WITs can be verified at all when this sidecar verifies them.
func (c *Config) checkSource(src identity.Source) error {
	field := "identity"
	switch {
	case c.Identity.Files != nil:
		field = "identity.files.wit"
	case c.Identity.WorkloadAPI != nil:
		field = "identity.workloadAPI.wit"
	}
	if err := c.checkOwnWIT(src, field); err != nil {
		return err
	}
	if f := c.Identity.Files; f != nil && c.verifiesWITs() {
		return checkWITTrust(f, src)
	}
	return nil
}

// checkOwnWIT refuses a WIT of ours whose cnf.jwk.alg the WIT algorithm rule does not allow: peers under the same
// rule would refuse every proof made with it.
func (c *Config) checkOwnWIT(src interface{ GetWIT() (*identity.WIT, error) }, field string) error {
	w, err := src.GetWIT()
	if errors.Is(err, identity.ErrNoWIT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if algs := c.Identity.witAlgorithms(); !slices.Contains(algs, w.Alg) {
		hint := ""
		if w.Alg == "EdDSA" && c.Identity.WITProfile != wire.WITProfileWIMSE {
			hint = "; Ed25519 workload keys need identity.witProfile: wimse"
		}
		return fmt.Errorf("%s: this workload's WIT has cnf.jwk.alg %q, which identity.witAlgorithms does not allow (%s): "+
			"peers would refuse its proofs%s", field, w.Alg, strings.Join(algs, ", "), hint)
	}
	return nil
}

// checkWITTrust refuses a files config under which every WIT would be refused with untrusted_issuer: no trust
// domain with WIT issuer keys, or a trust domain whose only JWT keys came from a plain JWK Set (read as JWT-SVID
// authorities, which WIT verification does not use).
func checkWITTrust(f *FilesConfig, src identity.Source) error {
	var names []string
	for name := range f.Bundles {
		names = append(names, name)
	}
	for name := range f.WITIssuers {
		if _, ok := f.Bundles[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	any := false
	for _, name := range names {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return fmt.Errorf("identity.files.bundles.%s: %w", name, err)
		}
		if wb, err := src.GetWITBundleForTrustDomain(td); err == nil && !wb.Empty() {
			any = true
			continue
		}
		if jb, err := src.GetJWTBundleForTrustDomain(td); err == nil && !jb.Empty() {
			return fmt.Errorf("identity.files.bundles.%s: has JWT-SVID keys (a JWK Set without \"use\" is read as those) "+
				"but no WIT issuer keys, so every WIT from %s would be refused with untrusted_issuer; list the trust "+
				"domain's WIT JWKS under identity.files.witIssuers.%s, or mark its keys \"use\": \"wit-svid\" in a SPIFFE "+
				"bundle", name, name, name)
		}
	}
	if !any {
		return errors.New("identity.files.bundles: no trust domain has WIT issuer keys, so every WIT would be refused " +
			"with untrusted_issuer; add the issuer's JWKS under identity.files.witIssuers.<trust domain>, or a SPIFFE " +
			"bundle whose keys have \"use\": \"wit-svid\"")
	}
	return nil
}
