package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// The CA rotates its root the way SPIRE does: at Rotation.PrepareAt of the active root's lifetime a successor is
// created (prepared) and published in every bundle, but signs nothing; at Rotation.ActivateAt it becomes the active
// root, which signs every new credential, and the one before is retired: still in the bundles until it expires,
// which is when the last credential it signed expires too (credentials are cut at their root's expiry). Each
// generation has its own WIT signing key, which rotates with the root and is published and retired with it.
//
// The state is an append-only list of immutable CA records, each written with create-if-absent semantics where
// the Store is shared, so replicas converge on one history without overwriting each other:
//
//	"x509"            generation 0's root (the record a CA before rotation existed already had)
//	"x509.N"          generation N's root, written when it is prepared
//	"x509.N.active"   written when generation N is activated
//
// Generation 0's keys are KeyX509CA and KeyWITSigning; generation N's are "x509-ca-N" and "wit-signing-N".

// Defaults of Rotation: a successor is prepared at half the active root's life and activated at five sixths, as
// SPIRE does. The successor is then in every bundle for a third of the root's life before it signs anything (for
// the 5-year default root, 20 months: every sidecar renews many times in that window, and one that was offline
// for months still finds it), and a retired root stays trusted for the last sixth, far longer than any credential
// it signed (issuer.maxTTL, a day at most).
const (
	DefaultPrepareAt  = 1.0 / 2
	DefaultActivateAt = 5.0 / 6
)

// Rotation says when the CA's root is rotated, as fractions of the active root's lifetime.
type Rotation struct {
	// PrepareAt is when a successor root is created and published; 0 means DefaultPrepareAt.
	PrepareAt float64
	// ActivateAt is when the successor starts signing; 0 means DefaultActivateAt. It must be after PrepareAt:
	// the window between them is how long every relying party has to learn the successor.
	ActivateAt float64
}

func (r *Rotation) setDefaults() error {
	if r.PrepareAt == 0 {
		r.PrepareAt = DefaultPrepareAt
	}
	if r.ActivateAt == 0 {
		r.ActivateAt = DefaultActivateAt
	}
	if !(r.PrepareAt > 0 && r.PrepareAt < r.ActivateAt && r.ActivateAt < 1) {
		return fmt.Errorf("issuer: rotation needs 0 < PrepareAt (%v) < ActivateAt (%v) < 1", r.PrepareAt, r.ActivateAt)
	}
	return nil
}

// Step is one step of a rotation, as Rotate reports it.
type Step string

// Rotation steps.
const (
	// StepPrepared: a successor root was created and published; it signs nothing yet.
	StepPrepared Step = "prepared"
	// StepActivated: the prepared root became the active one and signs every new credential.
	StepActivated Step = "activated"
	// StepRetired: the root active before StepActivated stays trusted until it expires.
	StepRetired Step = "retired"
	// StepDropped: a retired root expired and left the bundles.
	StepDropped Step = "dropped"
)

// Event is one step Rotate took, and the root it concerns.
type Event struct {
	Step       Step
	Generation int
	Root       *x509.Certificate
}

// authority is one generation of the CA: a root and its key, and the WIT signing key that rotates with it.
type authority struct {
	gen    int
	root   *x509.Certificate
	key    crypto.Signer
	witKey crypto.PublicKey
	witKID string
	wit    *wpt.Issuer
}

// caSet is the generations as the store held them when they were loaded.
type caSet struct {
	active   *authority
	prepared *authority   // nil: none
	retired  []*authority // older generations, oldest first; expired ones too (trusted leaves them out)
}

// trusted returns the generations whose roots are in the bundles at now: the active one, the prepared one, and
// the retired ones that have not expired, newest first.
func (s *caSet) trusted(now time.Time) []*authority {
	out := []*authority{s.active}
	if s.prepared != nil {
		out = append(out, s.prepared)
	}
	for _, a := range slices.Backward(s.retired) {
		if now.Before(a.root.NotAfter) {
			out = append(out, a)
		}
	}
	return out
}

// same reports whether s and o hold the same generations in the same roles.
func (s *caSet) same(o *caSet) bool {
	gens := func(s *caSet) []int {
		g := []int{s.active.gen}
		if s.prepared != nil {
			g = append(g, s.prepared.gen)
		} else {
			g = append(g, -1)
		}
		for _, a := range s.retired {
			g = append(g, a.gen)
		}
		return g
	}
	return slices.Equal(gens(s), gens(o))
}

func rootRecord(gen int) string {
	if gen == 0 {
		return caRecordName
	}
	return fmt.Sprintf("%s.%d", caRecordName, gen)
}

func activeRecord(gen int) string { return rootRecord(gen) + ".active" }

// keyNames are the KeyStore names of generation gen's root key and WIT signing key.
func keyNames(gen int) (x509CA, witSigning string) {
	if gen == 0 {
		return KeyX509CA, KeyWITSigning
	}
	return fmt.Sprintf("%s-%d", KeyX509CA, gen), fmt.Sprintf("%s-%d", KeyWITSigning, gen)
}

// load reads every generation from the store. With create, generation 0 is created when the store has no CA
// yet (New); without, that is an error (Reload: another instance must have created it first).
func (ca *CA) load(ctx context.Context, create bool) (*caSet, error) {
	key0, err := ca.caKey(0)
	if err != nil {
		return nil, err
	}
	root0, err := ca.readRoot(ctx, 0)
	switch {
	case errors.Is(err, ErrNotFound) && create:
		root0, err = ca.createRoot(ctx, 0, key0)
		if err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	}
	first, err := ca.newAuthority(0, root0, key0)
	if err != nil {
		return nil, err
	}
	gens, active := []*authority{first}, 0
	for gen := 1; ; gen++ {
		root, err := ca.readRoot(ctx, gen)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		key, err := ca.caKey(gen)
		if err != nil {
			return nil, err
		}
		a, err := ca.newAuthority(gen, root, key)
		if err != nil {
			return nil, err
		}
		gens = append(gens, a)
		m, err := ca.store.CAMaterial(ctx, activeRecord(gen))
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("issuer: loading CA record %q: %w", activeRecord(gen), err)
		case len(m.GetCertificatesDer()) != 1 || !slices.Equal(m.GetCertificatesDer()[0], root.Raw):
			return nil, fmt.Errorf("issuer: CA record %q names another root than %q", activeRecord(gen), rootRecord(gen))
		default:
			active = gen
		}
	}
	// Only the generation after the active one can have been prepared, since a successor is prepared only while
	// none is.
	if len(gens) > active+2 {
		return nil, fmt.Errorf("issuer: CA records hold generations up to %d, but %d is the active one: only one may be prepared",
			len(gens)-1, active)
	}
	set := &caSet{active: gens[active], retired: gens[:active]}
	if len(gens) == active+2 {
		set.prepared = gens[active+1]
	}
	return set, nil
}

// readRoot reads the root of generation gen (an error wrapping ErrNotFound if it has none).
func (ca *CA) readRoot(ctx context.Context, gen int) (*x509.Certificate, error) {
	name := rootRecord(gen)
	m, err := ca.store.CAMaterial(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("issuer: loading CA record %q: %w", name, err)
	case len(m.GetCertificatesDer()) == 0:
		return nil, fmt.Errorf("issuer: stored CA record %q has no certificate", name)
	}
	root, err := x509.ParseCertificate(m.GetCertificatesDer()[0])
	if err != nil {
		return nil, fmt.Errorf("issuer: stored CA certificate %q: %w", name, err)
	}
	return root, nil
}

// Generation returns the active generation (0 for the first root).
func (ca *CA) Generation() int { return ca.set.Load().active.gen }

// Prepared returns the prepared successor root, or nil when there is none.
func (ca *CA) Prepared() *x509.Certificate {
	if p := ca.set.Load().prepared; p != nil {
		return p.root
	}
	return nil
}

// at returns the moment frac of a's lifetime has passed, counted from its creation (NotBefore is backdated), so
// the fractions mean what they say of short test lifetimes too.
func at(a *authority, frac float64) time.Time {
	created := a.root.NotBefore.Add(backdate)
	return created.Add(time.Duration(float64(a.root.NotAfter.Sub(created)) * frac))
}

// activation is when s's prepared root becomes active: at ActivateAt of the active root's life, but not before
// the prepared root has been published for the whole window between PrepareAt and ActivateAt (it may have been
// prepared late, when no controller ran at PrepareAt), unless the active root expires first.
func (ca *CA) activation(s *caSet) time.Time {
	t := at(s.active, ca.rotation.ActivateAt)
	window := at(s.active, ca.rotation.ActivateAt).Sub(at(s.active, ca.rotation.PrepareAt))
	if published := s.prepared.root.NotBefore.Add(backdate).Add(window); published.After(t) {
		t = published
	}
	if t.After(s.active.root.NotAfter) {
		t = s.active.root.NotAfter
	}
	return t
}

// NextRotation returns when Rotate has its next step to take: preparing a successor, activating it, or dropping
// an expired retired root. It may be in the past.
func (ca *CA) NextRotation() time.Time {
	s := ca.set.Load()
	next := at(s.active, ca.rotation.PrepareAt)
	if s.prepared != nil {
		next = ca.activation(s)
	}
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	for _, a := range s.retired {
		if !ca.dropped[a.gen] && a.root.NotAfter.Before(next) {
			next = a.root.NotAfter
		}
	}
	return next
}

// Rotate takes the rotation steps that are due (Rotation), writing each to the store, and returns them. It reads
// the store first, so it continues whatever another instance (an earlier leader) did. Preparing and activating
// are never done in one call: a prepared root is always published before it signs. Only one instance sharing
// the store should call it (the leader); the others call Reload when the store changes.
func (ca *CA) Rotate(ctx context.Context) ([]Event, error) {
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	s, err := ca.load(ctx, false)
	if err != nil {
		return nil, err
	}
	ca.set.Store(s)
	now := ca.now()
	var events []Event
	for _, a := range s.retired {
		if !ca.dropped[a.gen] && !now.Before(a.root.NotAfter) {
			ca.dropped[a.gen] = true
			events = append(events, Event{Step: StepDropped, Generation: a.gen, Root: a.root})
		}
	}
	switch {
	case s.prepared == nil && !now.Before(at(s.active, ca.rotation.PrepareAt)):
		gen := s.active.gen + 1
		key, err := ca.caKey(gen)
		if err != nil {
			return events, err
		}
		root, err := ca.createRoot(ctx, gen, key)
		if err != nil {
			return events, err
		}
		p, err := ca.newAuthority(gen, root, key)
		if err != nil {
			return events, err
		}
		ca.set.Store(&caSet{active: s.active, prepared: p, retired: s.retired})
		events = append(events, Event{Step: StepPrepared, Generation: gen, Root: root})
	case s.prepared != nil && !now.Before(ca.activation(s)):
		p := s.prepared
		err := ca.store.PutCAMaterial(ctx, &agentauthv1.CAMaterial{Name: activeRecord(p.gen), CertificatesDer: [][]byte{p.root.Raw}})
		if err != nil {
			return events, fmt.Errorf("issuer: storing the activation of CA generation %d: %w", p.gen, err)
		}
		ca.set.Store(&caSet{active: p, retired: append(slices.Clip(s.retired), s.active)})
		events = append(events, Event{Step: StepActivated, Generation: p.gen, Root: p.root},
			Event{Step: StepRetired, Generation: s.active.gen, Root: s.active.root})
	}
	return events, nil
}

// Reload reads the generations from the store again, for an instance that does not rotate itself but shares the
// store with one that does, and reports whether they changed.
func (ca *CA) Reload(ctx context.Context) (bool, error) {
	ca.rotating.Lock()
	defer ca.rotating.Unlock()
	s, err := ca.load(ctx, false)
	if err != nil {
		return false, err
	}
	changed := !s.same(ca.set.Load())
	ca.set.Store(s)
	return changed, nil
}
