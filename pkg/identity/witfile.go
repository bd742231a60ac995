package identity

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// WITFileSource reads only a WIT and its proof-of-possession key from files, with the same reload discipline as
// FileSource. It is a WITProvider for a WorkloadAPISource whose server lacks the WIT-SVID profile (a SPIFFE
// helper or the controller's issuer writes the files). It checks the WIT-SVID profile and the key, but not the
// issuer signature (it has no bundle) nor the subject against an X.509-SVID: Ready does the latter.
type WITFileSource struct {
	tokenFile, keyFile string
	wit                atomic.Pointer[WIT]
	reloader           *fileReloader
}

// NewWITFileSource loads the WIT (compact JWS) and its PEM private key once; observer may be nil.
func NewWITFileSource(tokenFile, keyFile string, observer Observer) (*WITFileSource, error) {
	if tokenFile == "" || keyFile == "" {
		return nil, errors.New("identity: NewWITFileSource needs both the token file and the key file")
	}
	s := &WITFileSource{tokenFile: tokenFile, keyFile: keyFile, reloader: newFileReloader([]string{tokenFile, keyFile}, observer)}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads both files and swaps the WIT in if they changed and are valid; otherwise the old one stays.
func (s *WITFileSource) Reload() error {
	return s.reloader.reload(func(files map[string][]byte, now time.Time) error {
		key, err := parseKeyPEM(files[s.keyFile])
		if err != nil {
			return &ReloadError{Path: s.keyFile, Err: err}
		}
		w, err := parseWIT(strings.TrimSpace(string(files[s.tokenFile])), key, now)
		if err != nil {
			return &ReloadError{Path: s.tokenFile, Err: err}
		}
		s.wit.Store(w)
		return nil
	}, func() Status { return Status{WITExpiry: s.wit.Load().Expiry} })
}

// Watch polls the files every interval until ctx ends; it returns ctx.Err().
func (s *WITFileSource) Watch(ctx context.Context, interval time.Duration) error {
	return watch(ctx, interval, s.Reload)
}

// GetWIT implements WITProvider.
func (s *WITFileSource) GetWIT() (*WIT, error) { return checkWIT(s.wit.Load(), time.Now()) }

// Updated returns a channel closed at the next change of the WIT; WorkloadAPISource forwards it.
func (s *WITFileSource) Updated() <-chan struct{} { return s.reloader.updates.wait() }

var _ WITProvider = (*WITFileSource)(nil)
