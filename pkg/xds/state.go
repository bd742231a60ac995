package xds

import (
	"maps"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// State is an immutable snapshot of what a sidecar enforces: policies, revocations, risk states and trust
// bundles. The Client replaces the whole snapshot atomically on each applied update, so a reader holding a
// *State sees one consistent version; lookups are map reads with no locks.
type State struct {
	policies    map[string]*agentauthv1.Policy
	revocations map[string]*agentauthv1.Revocation
	revoked     map[subjectKey][]*agentauthv1.Revocation
	risk        map[subjectKey]*agentauthv1.RiskState
	riskByName  map[string]*agentauthv1.RiskState
	bundles     map[string]*agentauthv1.TrustBundle
	// versions holds, per type URL, each resource's version: what a reconnecting client sends as
	// initial_resource_versions so the server sends only what changed.
	versions map[string]map[string]string
}

// subjectKey indexes by subject without building a string per lookup.
type subjectKey struct{ kind, iss, value string }

func keyOf(s *agentauthv1.Subject) subjectKey {
	return subjectKey{s.GetKind(), s.GetIss(), s.GetValue()}
}

func emptyState() *State {
	return &State{
		policies:    map[string]*agentauthv1.Policy{},
		revocations: map[string]*agentauthv1.Revocation{},
		revoked:     map[subjectKey][]*agentauthv1.Revocation{},
		risk:        map[subjectKey]*agentauthv1.RiskState{},
		riskByName:  map[string]*agentauthv1.RiskState{},
		bundles:     map[string]*agentauthv1.TrustBundle{},
		versions:    map[string]map[string]string{},
	}
}

// Revoked returns the revocation that refuses a credential of the subject (kind, iss, value) issued at issuedAt,
// or nil. A revocation applies when it has not expired at now and the credential was issued before its
// not_before (or it has no not_before). An unknown issuedAt (zero) counts as issued before any not_before:
// when in doubt, refuse.
func (s *State) Revoked(kind, iss, value string, issuedAt, now time.Time) *agentauthv1.Revocation {
	for _, r := range s.revoked[subjectKey{kind, iss, value}] {
		if exp := r.GetExpires(); exp != nil && !now.Before(exp.AsTime()) {
			continue
		}
		nb := r.GetNotBefore()
		if nb == nil || issuedAt.IsZero() || issuedAt.Before(nb.AsTime()) {
			return r
		}
	}
	return nil
}

// Policy returns the policy with the given id.
func (s *State) Policy(id string) (*agentauthv1.Policy, bool) {
	p, ok := s.policies[id]
	return p, ok
}

// Policies returns every policy, ordered by id.
func (s *State) Policies() []*agentauthv1.Policy { return sortedValues(s.policies) }

// Revocation returns the revocation with the given id.
func (s *State) Revocation(id string) (*agentauthv1.Revocation, bool) {
	r, ok := s.revocations[id]
	return r, ok
}

// Revocations returns every revocation, ordered by id.
func (s *State) Revocations() []*agentauthv1.Revocation { return sortedValues(s.revocations) }

// Risk returns the risk state of the subject (kind, iss, value).
func (s *State) Risk(kind, iss, value string) (*agentauthv1.RiskState, bool) {
	r, ok := s.risk[subjectKey{kind, iss, value}]
	return r, ok
}

// TrustBundle returns the bundle of a trust domain.
func (s *State) TrustBundle(trustDomain string) (*agentauthv1.TrustBundle, bool) {
	b, ok := s.bundles[trustDomain]
	return b, ok
}

// TrustBundles returns every trust bundle, ordered by trust domain.
func (s *State) TrustBundles() []*agentauthv1.TrustBundle { return sortedValues(s.bundles) }

// ResourceVersions returns a copy of the version of each resource of a type URL.
func (s *State) ResourceVersions(typeURL string) map[string]string {
	return maps.Clone(s.versions[typeURL])
}

// Len returns the number of resources of a type URL.
func (s *State) Len(typeURL string) int { return len(s.versions[typeURL]) }

func sortedValues[V any](m map[string]V) []V {
	keys := slices.Sorted(maps.Keys(m))
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// resourceUpdate is one decoded, validated resource of a delta response.
type resourceUpdate struct {
	name    string
	version string
	msg     proto.Message
}

// with returns a new State with updates applied to type typeURL and removed resources dropped. Only the maps of
// that type are copied; the others are shared with s (they are never written after construction).
func (s *State) with(typeURL string, updates []resourceUpdate, removed []string) *State {
	next := *s
	next.versions = maps.Clone(s.versions)
	vers := maps.Clone(s.versions[typeURL])
	if vers == nil {
		vers = map[string]string{}
	}
	next.versions[typeURL] = vers

	switch typeURL {
	case agentauthv1.PolicyType:
		next.policies = applyTo(s.policies, updates, removed)
	case agentauthv1.RevocationType:
		next.revocations = applyTo(s.revocations, updates, removed)
		next.revoked = indexRevocations(s.revoked, s.revocations, updates, removed)
	case agentauthv1.RiskStateType:
		next.riskByName = applyTo(s.riskByName, updates, removed)
		next.risk = maps.Clone(s.risk)
		for _, name := range removed {
			if old, ok := s.riskByName[name]; ok {
				delete(next.risk, keyOf(old.GetSubject()))
			}
		}
		for _, u := range updates {
			r := u.msg.(*agentauthv1.RiskState)
			next.risk[keyOf(r.GetSubject())] = r
		}
	case agentauthv1.TrustBundleType:
		next.bundles = applyTo(s.bundles, updates, removed)
	}
	for _, name := range removed {
		delete(vers, name)
	}
	for _, u := range updates {
		vers[u.name] = u.version
	}
	return &next
}

func applyTo[M proto.Message](old map[string]M, updates []resourceUpdate, removed []string) map[string]M {
	m := maps.Clone(old)
	for _, name := range removed {
		delete(m, name)
	}
	for _, u := range updates {
		m[u.name] = u.msg.(M)
	}
	return m
}

// indexRevocations updates the by-subject index: only the subjects touched by this update get new slices.
func indexRevocations(index map[subjectKey][]*agentauthv1.Revocation, byID map[string]*agentauthv1.Revocation,
	updates []resourceUpdate, removed []string) map[subjectKey][]*agentauthv1.Revocation {
	next := maps.Clone(index)
	drop := func(id string) {
		old, ok := byID[id]
		if !ok {
			return
		}
		k := keyOf(old.GetSubject())
		list := slices.DeleteFunc(slices.Clone(next[k]), func(r *agentauthv1.Revocation) bool { return r.GetId() == id })
		if len(list) == 0 {
			delete(next, k)
		} else {
			next[k] = list
		}
	}
	for _, id := range removed {
		drop(id)
	}
	for _, u := range updates {
		drop(u.name)
		r := u.msg.(*agentauthv1.Revocation)
		k := keyOf(r.GetSubject())
		next[k] = append(slices.Clone(next[k]), r)
	}
	return next
}
