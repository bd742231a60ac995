package identity

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/exp/svid/witsvid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// FileConfig names the files a FileSource reads. Paths are read again on every Reload.
type FileConfig struct {
	CertFile string // X.509-SVID certificate chain, PEM, leaf first
	KeyFile  string // its private key, PEM (PKCS#8, SEC 1 or PKCS#1)

	// Bundles maps each trusted trust domain to one or more files, merged per trust domain. Each file is PEM CA
	// certificates, a SPIFFE bundle (JWK Set with x509-svid / jwt-svid / wit-svid keys), or a plain JWK Set
	// (read as JWT authorities). The SVID's own trust domain must be present with X.509 authorities.
	Bundles map[spiffeid.TrustDomain][]string

	// WITIssuers maps a trust domain to JWK Set files whose keys sign its WITs: the trust-domain-scoped JWKS a
	// WIMSE deployment publishes, trusted for WITs because the operator says so here (a key's own "use", if any,
	// is not consulted). Every key needs a kid, as WIT-SVIDs carry one.
	WITIssuers map[spiffeid.TrustDomain][]string

	WITFile    string // optional: the WIT (compact JWS), SPIFFE WIT-SVID profile
	WITKeyFile string // with WITFile: PEM private key whose public half is the WIT's cnf.jwk

	Observer Observer // optional
}

// FileSource serves credentials from files, ghostunnel-style: the current state sits behind an atomic pointer so
// readers never lock, and Reload swaps it only when every file is present and valid. A failed reload leaves the
// old state in use, reports to the Observer and returns a *ReloadError.
type FileSource struct {
	cfg      FileConfig
	state    atomic.Pointer[fileState]
	reloader *fileReloader
}

type fileState struct {
	svid    *x509svid.SVID
	x509    *x509bundle.Set
	jwt     *jwtbundle.Set
	wit     *witbundle.Set
	tds     []spiffeid.TrustDomain
	witCred *WIT
}

// NewFileSource loads the files once; it fails if they are not a valid, unexpired set.
func NewFileSource(cfg FileConfig) (*FileSource, error) {
	switch {
	case cfg.CertFile == "" || cfg.KeyFile == "":
		return nil, errors.New("identity: FileConfig needs CertFile and KeyFile")
	case len(cfg.Bundles) == 0:
		return nil, errors.New("identity: FileConfig needs at least one trust bundle")
	case (cfg.WITFile == "") != (cfg.WITKeyFile == ""):
		return nil, errors.New("identity: FileConfig needs both WITFile and WITKeyFile, or neither")
	}
	cfg.Bundles = maps.Clone(cfg.Bundles)
	cfg.WITIssuers = maps.Clone(cfg.WITIssuers)
	paths := []string{cfg.CertFile, cfg.KeyFile}
	for _, td := range sortedTDs(cfg.Bundles) {
		paths = append(paths, cfg.Bundles[td]...)
	}
	for _, td := range sortedTDs(cfg.WITIssuers) {
		paths = append(paths, cfg.WITIssuers[td]...)
	}
	if cfg.WITFile != "" {
		paths = append(paths, cfg.WITFile, cfg.WITKeyFile)
	}
	s := &FileSource{cfg: cfg, reloader: newFileReloader(paths, cfg.Observer)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads every file and, if the content changed and is valid, swaps it in and signals Updated. Unchanged
// content is a no-op. On failure the previous state stays in use; the same rejected content is reported to the
// Observer only once.
func (s *FileSource) Reload() error {
	return s.reloader.reload(func(files map[string][]byte, now time.Time) error {
		st, err := s.build(files, now)
		if err == nil {
			s.state.Store(st)
		}
		return err
	}, func() Status { return StatusOf(s) })
}

// Watch polls the files every interval and reloads when their content changes, until ctx ends; it returns
// ctx.Err().
func (s *FileSource) Watch(ctx context.Context, interval time.Duration) error {
	return watch(ctx, interval, s.Reload)
}

func (s *FileSource) build(files map[string][]byte, now time.Time) (*fileState, error) {
	svid, err := parseSVID(files[s.cfg.CertFile], files[s.cfg.KeyFile])
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.CertFile, Err: err}
	}
	if err := checkValidity(svid.Certificates[0], now); err != nil {
		return nil, &ReloadError{Path: s.cfg.CertFile, Err: err}
	}

	st := &fileState{svid: svid, x509: x509bundle.NewSet(), jwt: jwtbundle.NewSet(), wit: witbundle.NewSet()}
	all := spiffebundle.NewSet()
	tds := sortedTDs(s.cfg.Bundles)
	for _, td := range sortedTDs(s.cfg.WITIssuers) {
		if _, ok := s.cfg.Bundles[td]; !ok {
			tds = append(tds, td)
		}
	}
	for _, td := range tds {
		merged := spiffebundle.New(td)
		for _, p := range s.cfg.Bundles[td] {
			b, err := parseBundle(td, files[p])
			if err == nil {
				err = mergeBundle(merged, b)
			}
			if err != nil {
				return nil, &ReloadError{Path: p, Err: err}
			}
		}
		for _, p := range s.cfg.WITIssuers[td] {
			if err := addWITIssuers(merged, files[p]); err != nil {
				return nil, &ReloadError{Path: p, Err: err}
			}
		}
		all.Add(merged)
		st.x509.Add(merged.X509Bundle())
		st.jwt.Add(merged.JWTBundle())
		st.wit.Add(merged.WITBundle())
		if len(merged.X509Authorities()) > 0 {
			st.tds = append(st.tds, td)
		}
	}

	// Peers validate our SVID against our bundle; refuse a pair that would fail there (e.g. a new CA whose bundle
	// has not arrived yet).
	if _, _, err := x509svid.Verify(svid.Certificates, st.x509, x509svid.WithTime(now)); err != nil {
		return nil, &ReloadError{Path: s.cfg.CertFile, Err: fmt.Errorf("%w: SVID does not chain to the bundle of %q: %v",
			autherr.ErrUntrustedIssuer, svid.ID.TrustDomain(), err)}
	}

	if s.cfg.WITFile == "" {
		return st, nil
	}
	key, err := parseKeyPEM(files[s.cfg.WITKeyFile])
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.WITKeyFile, Err: err}
	}
	token := strings.TrimSpace(string(files[s.cfg.WITFile]))
	wit, err := parseWIT(token, key, now)
	if err != nil {
		return nil, &ReloadError{Path: s.cfg.WITFile, Err: err}
	}
	if wit.Subject != svid.ID.String() {
		return nil, &ReloadError{Path: s.cfg.WITFile, Err: fmt.Errorf("%w: WIT subject %q is not the X.509-SVID's %q",
			autherr.ErrMismatch, wit.Subject, svid.ID)}
	}
	// When WIT authorities for its trust domain are configured, check the issuer signature too, so a WIT that
	// every peer would refuse is never loaded.
	if b, ok := st.wit.Get(svid.ID.TrustDomain()); ok && !b.Empty() {
		if wit.Alg == string(jose.EdDSA) {
			err = verifyWIMSEWIT(token, b)
		} else {
			_, err = witsvid.ParseAndValidate(token, st.wit)
		}
		if err != nil {
			return nil, &ReloadError{Path: s.cfg.WITFile, Err: fmt.Errorf("%w: %v", autherr.ErrBadSignature, err)}
		}
	}
	st.witCred = wit
	return st, nil
}

// GetX509SVID implements x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) { return s.state.Load().svid, nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.state.Load().x509.GetX509BundleForTrustDomain(td)
}

// GetJWTBundleForTrustDomain implements jwtbundle.Source.
func (s *FileSource) GetJWTBundleForTrustDomain(td spiffeid.TrustDomain) (*jwtbundle.Bundle, error) {
	return s.state.Load().jwt.GetJWTBundleForTrustDomain(td)
}

// GetWITBundleForTrustDomain implements witbundle.Source.
func (s *FileSource) GetWITBundleForTrustDomain(td spiffeid.TrustDomain) (*witbundle.Bundle, error) {
	return s.state.Load().wit.GetWITBundleForTrustDomain(td)
}

// GetWIT implements Source.
func (s *FileSource) GetWIT() (*WIT, error) { return checkWIT(s.state.Load().witCred, time.Now()) }

// Updated implements Source.
func (s *FileSource) Updated() <-chan struct{} { return s.reloader.updates.wait() }

// Close implements Source. A FileSource holds no resources; stop Watch with its context.
func (s *FileSource) Close() error { return nil }

func (s *FileSource) trustDomains() []spiffeid.TrustDomain { return s.state.Load().tds }

func checkWIT(w *WIT, now time.Time) (*WIT, error) {
	if w == nil {
		return nil, ErrNoWIT
	}
	if now.After(w.Expiry) {
		return nil, fmt.Errorf("identity: %w: WIT for %s expired at %s", autherr.ErrExpired, w.Subject, w.Expiry.UTC().Format(time.RFC3339))
	}
	return w, nil
}

func sortedTDs[V any](m map[spiffeid.TrustDomain]V) []spiffeid.TrustDomain {
	return slices.SortedFunc(maps.Keys(m), func(a, b spiffeid.TrustDomain) int { return strings.Compare(a.Name(), b.Name()) })
}

var _ Source = (*FileSource)(nil)
