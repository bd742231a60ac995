package identity

import (
	"crypto"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source hands out the current credentials of this workload. Every method is safe for concurrent use and cheap
// enough to call on every handshake or request, which is how rotations take effect without restarts.
type Source interface {
	x509svid.Source   // this workload's X.509-SVID
	x509bundle.Source // X.509 authorities per trust domain (peer certificate validation)
	jwtbundle.Source  // JWT-SVID authorities per trust domain
	witbundle.Source  // WIT-SVID authorities per trust domain (incoming WIT validation)

	// GetWIT returns this workload's current, unexpired WIT; an error wrapping ErrNoWIT when the source has none,
	// or autherr.ErrExpired when the one it has has expired.
	GetWIT() (*WIT, error)

	// Updated returns a channel that is closed at the next change of any credential or bundle. Take the channel
	// first, then read the state, then wait on it: no change is missed, and any number of goroutines may wait.
	Updated() <-chan struct{}

	// Close releases what the source holds (connections, goroutines). Methods may fail after Close.
	Close() error
}

// WIT is a WIMSE Workload Identity Token together with the private key whose public half is its cnf.jwk.
type WIT struct {
	Token   string        // compact JWS (typ wit+jwt)
	Key     crypto.Signer // proof-of-possession key; never leaves the process
	Alg     string        // cnf.jwk.alg: the algorithm proofs (WPT, HTTP signatures) must be signed with
	Subject string        // sub: the workload identifier, a SPIFFE ID here
	Expiry  time.Time     // exp
}

// ErrNoWIT is returned (wrapped) by GetWIT when the source is not configured with a WIT.
var ErrNoWIT = errors.New("identity: no WIT configured")

// Status summarises the credentials a source holds, for metrics and logs.
type Status struct {
	ID           spiffeid.ID            // SPIFFE ID of the X.509-SVID
	X509Expiry   time.Time              // NotAfter of the X.509-SVID leaf
	WITExpiry    time.Time              // exp of the WIT; zero when there is none
	TrustDomains []spiffeid.TrustDomain // trust domains with X.509 authorities
}

// Observer receives credential lifecycle events, e.g. to count rotations and export expiry as metrics. Calls
// come from the goroutine that reloads and must not block.
type Observer interface {
	// Rotated is called after new credentials were loaded and swapped in, including the first load.
	Rotated(Status)
	// RotationFailed is called when new material was rejected or could not be fetched; the old state stays in use.
	RotationFailed(error)
}

// ObserverFuncs adapts two functions to Observer; nil fields are skipped.
type ObserverFuncs struct {
	OnRotated        func(Status)
	OnRotationFailed func(error)
}

// Rotated implements Observer.
func (o ObserverFuncs) Rotated(s Status) {
	if o.OnRotated != nil {
		o.OnRotated(s)
	}
}

// RotationFailed implements Observer.
func (o ObserverFuncs) RotationFailed(err error) {
	if o.OnRotationFailed != nil {
		o.OnRotationFailed(err)
	}
}

// Ready reports whether src can serve traffic now: an X.509-SVID within its validity period, X.509 authorities
// for its trust domain, and, when requireWIT is set, an unexpired WIT whose subject is the SVID's SPIFFE ID.
// The error says what is missing and wraps an autherr reason.
func Ready(src Source, requireWIT bool) error {
	svid, err := src.GetX509SVID()
	if err != nil {
		return fmt.Errorf("identity: %w: no X.509-SVID: %v", autherr.ErrMissing, err)
	}
	if err := checkValidity(svid.Certificates[0], time.Now()); err != nil {
		return fmt.Errorf("identity: X.509-SVID %s: %w", svid.ID, err)
	}
	td := svid.ID.TrustDomain()
	b, err := src.GetX509BundleForTrustDomain(td)
	if err != nil || len(b.X509Authorities()) == 0 {
		return fmt.Errorf("identity: %w: no X.509 authorities for own trust domain %q", autherr.ErrUntrustedIssuer, td)
	}
	if !requireWIT {
		return nil
	}
	wit, err := src.GetWIT()
	if err != nil {
		return fmt.Errorf("identity: WIT required: %w", err)
	}
	if wit.Subject != svid.ID.String() {
		return fmt.Errorf("identity: %w: WIT subject %q is not the X.509-SVID's %q", autherr.ErrMismatch, wit.Subject, svid.ID)
	}
	return nil
}

// StatusOf summarises what src holds now; fields it cannot read stay zero.
func StatusOf(src Source) Status {
	var st Status
	if svid, err := src.GetX509SVID(); err == nil {
		st.ID = svid.ID
		st.X509Expiry = svid.Certificates[0].NotAfter
	}
	if wit, err := src.GetWIT(); err == nil {
		st.WITExpiry = wit.Expiry
	}
	if lister, ok := src.(interface{ trustDomains() []spiffeid.TrustDomain }); ok {
		st.TrustDomains = lister.trustDomains()
	}
	return st
}

// notifier is a broadcast "something changed" signal: a channel closed and replaced on every change.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}
