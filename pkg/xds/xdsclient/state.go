package xdsclient

import (
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// State is an immutable snapshot of what a sidecar enforces: policies, revocations, risk states and trust
// bundles. The Client replaces the whole snapshot atomically on each applied update, so a reader holding a
// *State sees one consistent version; lookups take no locks. An update copies only the trie nodes on the paths
// to what it changed.
type State struct {
	// resources holds, per served type (in ServedTypes order), each resource with its version: the content, and
	// what a reconnecting client sends as initial_resource_versions so the server sends only what changed.
	resources []hashTrie[string, entry]
	revoked   hashTrie[subjectKey, []*agentauthv1.Revocation]
	risk      hashTrie[subjectKey, []*agentauthv1.RiskState]
}

type entry struct {
	msg     proto.Message
	version string
}

// subjectKey indexes by subject without building a string per lookup.
type subjectKey struct{ kind, iss, value string }

func keyOf(s *agentauthv1.Subject) subjectKey {
	return subjectKey{s.GetKind(), s.GetIss(), s.GetValue()}
}

// delegatedKind indexes a user revocation under each of its delegated_subjects (RevokedDelegated). No Subject
// has this kind: the mapping and the admin API make none.
const delegatedKind = "delegated_subject"

// indexKeys are the keys a revocation or risk state is indexed under: its subject and, when the subject names
// an issuer, the same subject with none, which is what a lookup without an issuer finds (see Revoked); and each
// of names (a revocation's delegated_subjects).
func indexKeys(s *agentauthv1.Subject, names []string) []subjectKey {
	keys := make([]subjectKey, 0, 2+len(names))
	keys = append(keys, keyOf(s))
	if s.GetIss() != "" {
		keys = append(keys, subjectKey{kind: s.GetKind(), value: s.GetValue()})
	}
	for _, n := range names {
		keys = append(keys, subjectKey{kind: delegatedKind, value: n})
	}
	return keys
}

func emptyState() *State {
	seed := maphash.MakeSeed()
	s := &State{
		resources: make([]hashTrie[string, entry], len(agentauthv1.ServedTypes())),
		revoked:   newHashTrie[subjectKey, []*agentauthv1.Revocation](subjectHasher(seed)),
		risk:      newHashTrie[subjectKey, []*agentauthv1.RiskState](subjectHasher(seed)),
	}
	for i := range s.resources {
		s.resources[i] = newHashTrie[string, entry](stringHasher(seed))
	}
	return s
}

// typed returns the resources of a type URL, and false for a type that is not served.
func (s *State) typed(typeURL string) (hashTrie[string, entry], bool) {
	if i := slices.Index(agentauthv1.ServedTypes(), typeURL); i >= 0 {
		return s.resources[i], true
	}
	return hashTrie[string, entry]{}, false
}

// Revoked returns the revocation that refuses, at now, a credential of the subject (kind, iss, value) issued at
// issuedAt (Revocation.Refuses), or nil. When in doubt it refuses, so an empty iss matches the subject under any
// issuer: a sidecar does not always know who issued the identifier it checks (a Txn-Token's sub does not say
// which identity provider named the user, nor an opaque id which transmitter).
func (s *State) Revoked(kind, iss, value string, issuedAt, now time.Time) *agentauthv1.Revocation {
	list, _ := s.revoked.get(subjectKey{kind, iss, value})
	for _, r := range list {
		if r.Refuses(issuedAt, now) {
			return r
		}
	}
	return nil
}

// RevokedDelegated is Revoked for a delegated user as the token service names them (a Txn-Token's sub): the
// revocation whose delegated_subjects holds that name (agentauthv1.NormalDelegated) and that refuses, at now, a
// token of that user issued at issuedAt, or nil.
func (s *State) RevokedDelegated(sub string, issuedAt, now time.Time) *agentauthv1.Revocation {
	return s.Revoked(delegatedKind, "", agentauthv1.NormalDelegated(sub), issuedAt, now)
}

// Policy returns the policy with the given id.
func (s *State) Policy(id string) (*agentauthv1.Policy, bool) {
	return get[*agentauthv1.Policy](s, agentauthv1.PolicyType, id)
}

// Policies returns every policy, ordered by id.
func (s *State) Policies() []*agentauthv1.Policy {
	return all[*agentauthv1.Policy](s, agentauthv1.PolicyType)
}

// Revocation returns the revocation with the given id.
func (s *State) Revocation(id string) (*agentauthv1.Revocation, bool) {
	return get[*agentauthv1.Revocation](s, agentauthv1.RevocationType, id)
}

// Revocations returns every revocation, ordered by id.
func (s *State) Revocations() []*agentauthv1.Revocation {
	return all[*agentauthv1.Revocation](s, agentauthv1.RevocationType)
}

// Risks returns the risk states of the subject (kind, iss, value); with an empty iss, those under every issuer,
// as Revoked matches.
func (s *State) Risks(kind, iss, value string) []*agentauthv1.RiskState {
	list, _ := s.risk.get(subjectKey{kind, iss, value})
	return list
}

// RiskState returns the risk state with the given resource name.
func (s *State) RiskState(name string) (*agentauthv1.RiskState, bool) {
	return get[*agentauthv1.RiskState](s, agentauthv1.RiskStateType, name)
}

// TrustBundle returns the bundle of a trust domain.
func (s *State) TrustBundle(trustDomain string) (*agentauthv1.TrustBundle, bool) {
	return get[*agentauthv1.TrustBundle](s, agentauthv1.TrustBundleType, trustDomain)
}

// TrustBundles returns every trust bundle, ordered by trust domain.
func (s *State) TrustBundles() []*agentauthv1.TrustBundle {
	return all[*agentauthv1.TrustBundle](s, agentauthv1.TrustBundleType)
}

// ResourceVersions returns the version of each resource of a type URL.
func (s *State) ResourceVersions(typeURL string) map[string]string {
	m, ok := s.typed(typeURL)
	if !ok {
		return nil
	}
	out := make(map[string]string, m.len())
	m.each(func(name string, e entry) { out[name] = e.version })
	return out
}

// Len returns the number of resources of a type URL.
func (s *State) Len(typeURL string) int {
	m, _ := s.typed(typeURL)
	return m.len()
}

func get[M proto.Message](s *State, typeURL, name string) (M, bool) {
	m, _ := s.typed(typeURL)
	e, ok := m.get(name)
	if !ok {
		var zero M
		return zero, false
	}
	return e.msg.(M), true
}

func all[M proto.Message](s *State, typeURL string) []M {
	type named struct {
		name string
		msg  M
	}
	var list []named
	m, _ := s.typed(typeURL)
	m.each(func(name string, e entry) { list = append(list, named{name, e.msg.(M)}) })
	slices.SortFunc(list, func(a, b named) int { return strings.Compare(a.name, b.name) })
	out := make([]M, len(list))
	for i, n := range list {
		out[i] = n.msg
	}
	return out
}

// resourceUpdate is one decoded, validated resource of a delta response.
type resourceUpdate struct {
	name    string
	version string
	msg     proto.Message
}

// with returns a new State with updates applied to type typeURL (a served type) and removed resources dropped.
// s is unchanged.
func (s *State) with(typeURL string, updates []resourceUpdate, removed []string) *State {
	ti := slices.Index(agentauthv1.ServedTypes(), typeURL)
	next := *s
	next.resources = slices.Clone(s.resources)
	res := &next.resources[ti]

	// unindex drops the current resource called name from the subject indexes.
	unindex := func(name string) {
		old, ok := res.get(name)
		if !ok {
			return
		}
		switch m := old.msg.(type) {
		case *agentauthv1.Revocation:
			next.revoked = unindexed(next.revoked, indexKeys(m.GetSubject(), m.GetDelegatedSubjects()),
				func(r *agentauthv1.Revocation) bool { return r.GetId() == name })
		case *agentauthv1.RiskState:
			key := m.GetSubject().Key()
			next.risk = unindexed(next.risk, indexKeys(m.GetSubject(), nil),
				func(r *agentauthv1.RiskState) bool { return r.GetSubject().Key() == key })
		}
	}
	for _, name := range removed {
		unindex(name)
		*res = res.del(name)
	}
	for _, u := range updates {
		unindex(u.name)
		*res = res.set(u.name, entry{msg: u.msg, version: u.version})
		switch m := u.msg.(type) {
		case *agentauthv1.Revocation:
			next.revoked = indexed(next.revoked, indexKeys(m.GetSubject(), m.GetDelegatedSubjects()), m)
		case *agentauthv1.RiskState:
			next.risk = indexed(next.risk, indexKeys(m.GetSubject(), nil), m)
		}
	}
	return &next
}

// indexed returns idx with v added to the list of each of keys (indexKeys).
func indexed[V any](idx hashTrie[subjectKey, []V], keys []subjectKey, v V) hashTrie[subjectKey, []V] {
	for _, k := range keys {
		list, _ := idx.get(k)
		idx = idx.set(k, append(slices.Clip(list), v))
	}
	return idx
}

// unindexed returns idx without the entries that drop matches in the lists of keys; an emptied list leaves no
// key behind.
func unindexed[V any](idx hashTrie[subjectKey, []V], keys []subjectKey, drop func(V) bool) hashTrie[subjectKey, []V] {
	for _, k := range keys {
		list, _ := idx.get(k)
		if list = slices.DeleteFunc(slices.Clone(list), drop); len(list) == 0 {
			idx = idx.del(k)
		} else {
			idx = idx.set(k, list)
		}
	}
	return idx
}
