package xdsclient

import (
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/hamt"
	"github.com/agentauth/agentauth/pkg/revocation"
)

// State is an immutable snapshot of what a sidecar enforces: policies, revocations, risk states and trust
// bundles. The Client replaces the whole snapshot atomically on each applied update, so a reader holding a
// *State sees one consistent version; lookups take no locks. An update copies only the trie nodes on the paths
// to what it changed.
type State struct {
	// resources holds, per served type (in ServedTypes order), each resource with its version: the content, and
	// what a reconnecting client sends as initial_resource_versions so the server sends only what changed.
	resources []hamt.Map[string, entry]
	revoked   *revocation.Index
	risk      hamt.Map[subjectKey, []*agentauthv1.RiskState]
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

// indexKeys are the keys a risk state is indexed under: its subject and, when the subject names an issuer, the
// same subject with none, which is what a lookup without an issuer finds (see Risks), as revocations are.
func indexKeys(s *agentauthv1.Subject) []subjectKey {
	keys := make([]subjectKey, 0, 2)
	keys = append(keys, keyOf(s))
	if s.GetIss() != "" {
		keys = append(keys, subjectKey{kind: s.GetKind(), value: s.GetValue()})
	}
	return keys
}

func subjectHasher(seed maphash.Seed) func(subjectKey) uint64 {
	return func(k subjectKey) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(k.kind)
		h.WriteByte(0)
		h.WriteString(k.iss)
		h.WriteByte(0)
		h.WriteString(k.value)
		return h.Sum64()
	}
}

func emptyState() *State {
	seed := maphash.MakeSeed()
	s := &State{
		resources: make([]hamt.Map[string, entry], len(agentauthv1.ServedTypes())),
		revoked:   revocation.NewIndex(),
		risk:      hamt.New[subjectKey, []*agentauthv1.RiskState](subjectHasher(seed)),
	}
	for i := range s.resources {
		s.resources[i] = hamt.New[string, entry](hamt.StringHasher(seed))
	}
	return s
}

// typed returns the resources of a type URL, and false for a type that is not served.
func (s *State) typed(typeURL string) (hamt.Map[string, entry], bool) {
	if i := slices.Index(agentauthv1.ServedTypes(), typeURL); i >= 0 {
		return s.resources[i], true
	}
	return hamt.Map[string, entry]{}, false
}

// RevocationIndex returns the index of the revocations this state holds: what a sidecar asks whether a caller is
// refused.
func (s *State) RevocationIndex() *revocation.Index { return s.revoked }

// Revoked returns the revocation that refuses, at now, a credential of the subject (kind, iss, value) issued at
// issuedAt, or nil (revocation.Index.Refusing; an empty iss matches the subject under any issuer).
func (s *State) Revoked(kind, iss, value string, issuedAt, now time.Time) *agentauthv1.Revocation {
	return s.revoked.Refusing(revocation.Kind(kind), iss, value, issuedAt, now)
}

// RevokedDelegated is Revoked for a delegated user as the token service names them (a Txn-Token's sub)
// (revocation.Index.RefusingDelegated).
func (s *State) RevokedDelegated(sub string, issuedAt, now time.Time) *agentauthv1.Revocation {
	return s.revoked.RefusingDelegated(sub, issuedAt, now)
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
	list, _ := s.risk.Get(subjectKey{kind, iss, value})
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
	out := make(map[string]string, m.Len())
	m.Each(func(name string, e entry) { out[name] = e.version })
	return out
}

// Len returns the number of resources of a type URL.
func (s *State) Len(typeURL string) int {
	m, _ := s.typed(typeURL)
	return m.Len()
}

func get[M proto.Message](s *State, typeURL, name string) (M, bool) {
	m, _ := s.typed(typeURL)
	e, ok := m.Get(name)
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
	m.Each(func(name string, e entry) { list = append(list, named{name, e.msg.(M)}) })
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

	// Revocations are indexed by the revocation package, which is given the ones removed or replaced (gone) as
	// well as the new ones: the index keeps none by id, the resources do (a revocation's name is its id).
	var revoked, gone []*agentauthv1.Revocation
	// unindex drops the current resource called name from the subject indexes.
	unindex := func(name string) {
		old, ok := res.Get(name)
		if !ok {
			return
		}
		switch m := old.msg.(type) {
		case *agentauthv1.Revocation:
			gone = append(gone, m)
		case *agentauthv1.RiskState:
			key := m.GetSubject().Key()
			next.risk = unindexed(next.risk, indexKeys(m.GetSubject()),
				func(r *agentauthv1.RiskState) bool { return r.GetSubject().Key() == key })
		}
	}
	for _, name := range removed {
		unindex(name)
		*res = res.Del(name)
	}
	for _, u := range updates {
		unindex(u.name)
		*res = res.Set(u.name, entry{msg: u.msg, version: u.version})
		switch m := u.msg.(type) {
		case *agentauthv1.Revocation:
			revoked = append(revoked, m)
		case *agentauthv1.RiskState:
			next.risk = indexed(next.risk, indexKeys(m.GetSubject()), m)
		}
	}
	if typeURL == agentauthv1.RevocationType {
		next.revoked = s.revoked.With(revoked, gone)
	}
	return &next
}

// indexed returns idx with v added to the list of each of keys (indexKeys).
func indexed[V any](idx hamt.Map[subjectKey, []V], keys []subjectKey, v V) hamt.Map[subjectKey, []V] {
	for _, k := range keys {
		list, _ := idx.Get(k)
		idx = idx.Set(k, append(slices.Clip(list), v))
	}
	return idx
}

// unindexed returns idx without the entries that drop matches in the lists of keys; an emptied list leaves no
// key behind.
func unindexed[V any](idx hamt.Map[subjectKey, []V], keys []subjectKey, drop func(V) bool) hamt.Map[subjectKey, []V] {
	for _, k := range keys {
		list, _ := idx.Get(k)
		if list = slices.DeleteFunc(slices.Clone(list), drop); len(list) == 0 {
			idx = idx.Del(k)
		} else {
			idx = idx.Set(k, list)
		}
	}
	return idx
}
