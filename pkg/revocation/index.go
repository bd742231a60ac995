package revocation

import (
	"hash/maphash"
	"slices"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/hamt"
)

// Index holds revocations by subject, for lookups that do not depend on how many revocations there are. An
// Index is immutable: With returns a new one that shares all but what changed with the old, so a sidecar
// replaces its index on every xDS update, and the controller on every write, while readers keep the one they
// hold, without locks.
//
// A revocation is found under its subject (kind, iss, value) and under the same subject with no issuer, which is
// what a lookup that does not know the issuer asks for; a user revocation also under each of its
// delegated_subjects (RefusingDelegated).
//
// An Index keeps no revocation by id: its writers hold their revocations by id already (a sidecar's xDS state,
// the controller's state service), and a second trie by id cost every update a copy of its path.
type Index struct {
	bySubject hamt.Map[key, []*agentauthv1.Revocation]
}

// key indexes by subject without building a string per lookup. delegated marks a delegated_subjects name: no
// Subject collides with one, whatever kind a security event names.
type key struct {
	kind       Kind
	iss, value string
	delegated  bool
}

// NewIndex returns an Index of revs. A later revocation replaces an earlier one with the same id.
func NewIndex(revs ...*agentauthv1.Revocation) *Index {
	last := make(map[string]int, len(revs))
	for i, r := range revs {
		last[r.GetId()] = i
	}
	if len(last) < len(revs) {
		unique := make([]*agentauthv1.Revocation, 0, len(last))
		for i, r := range revs {
			if last[r.GetId()] == i {
				unique = append(unique, r)
			}
		}
		revs = unique
	}
	x := &Index{bySubject: hamt.New[key, []*agentauthv1.Revocation](keyHasher(maphash.MakeSeed()))}
	return x.With(revs, nil)
}

func keyHasher(seed maphash.Seed) func(key) uint64 {
	return func(k key) uint64 {
		var h maphash.Hash
		h.SetSeed(seed)
		h.WriteString(string(k.kind))
		h.WriteByte(0)
		h.WriteString(k.iss)
		h.WriteByte(0)
		h.WriteString(k.value)
		if k.delegated {
			h.WriteByte(1)
		}
		return h.Sum64()
	}
}

// appendKeys appends to ks the keys r is indexed under. Callers pass a small array's slice, which keeps the keys
// of a revocation with no more than one delegated subject off the heap.
func appendKeys(ks []key, r *agentauthv1.Revocation) []key {
	s := r.GetSubject()
	kind := KindOf(s)
	value := Normal(kind, s.GetValue())
	ks = append(ks, key{kind: kind, iss: s.GetIss(), value: value})
	if s.GetIss() != "" {
		ks = append(ks, key{kind: kind, value: value})
	}
	for _, n := range r.GetDelegatedSubjects() {
		ks = append(ks, key{value: NormalDelegated(n), delegated: true})
	}
	return ks
}

// With returns x without the revocations in remove, then with add put in. x is unchanged. A revocation is
// removed by its id under the keys its subject gives, so remove holds the revocations as x was given them; one
// x does not hold is ignored. As x keeps nothing by id, a revocation of add that replaces one x holds (the same
// id) does so only when the caller passes the replaced one in remove.
func (x *Index) With(add, remove []*agentauthv1.Revocation) *Index {
	next := *x
	for _, r := range remove {
		next.drop(r)
	}
	var buf [3]key
	for _, r := range add {
		for _, k := range appendKeys(buf[:0], r) {
			list, _ := next.bySubject.Get(k)
			next.bySubject = next.bySubject.Set(k, append(slices.Clip(list), r))
		}
	}
	return &next
}

// drop removes the revocation with r's id from the keys of r.
func (x *Index) drop(r *agentauthv1.Revocation) {
	id := r.GetId()
	same := func(o *agentauthv1.Revocation) bool { return o.GetId() == id }
	var buf [3]key
	for _, k := range appendKeys(buf[:0], r) {
		list, _ := x.bySubject.Get(k)
		switch {
		case !slices.ContainsFunc(list, same):
		case len(list) == 1:
			x.bySubject = x.bySubject.Del(k)
		default:
			x.bySubject = x.bySubject.Set(k, slices.DeleteFunc(slices.Clone(list), same))
		}
	}
}

// About returns the revocations of the subject (kind, iss, value), whether they refuse anything or not; value
// is compared in Normal form. An empty iss matches the subject under any issuer: a caller does not always know
// who issued the identifier it checks (a Txn-Token's sub does not say which identity provider named the user,
// nor an opaque id which transmitter), and when in doubt, refuse. The slice is shared: do not change it.
func (x *Index) About(kind Kind, iss, value string) []*agentauthv1.Revocation {
	list, _ := x.bySubject.Get(key{kind: kind, iss: iss, value: Normal(kind, value)})
	return list
}

// Refusing returns a revocation of the subject (kind, iss, value; see About) that refuses, at now, a credential
// issued at issuedAt (Refuses), or nil.
func (x *Index) Refusing(kind Kind, iss, value string, issuedAt, now time.Time) *agentauthv1.Revocation {
	return first(x.About(kind, iss, value), issuedAt, now)
}

// RefusingDelegated is Refusing for a delegated user as the token service names them (a Txn-Token's sub): a
// revocation whose delegated_subjects holds that name (in NormalDelegated form) and that refuses, at now, a token
// of that user issued at issuedAt, or nil. A user is never matched by the value a security event gave: only the
// controller knows how the token service names that user (its subjectPrefix), and it resolved that into
// delegated_subjects (DelegatedSubjects).
func (x *Index) RefusingDelegated(name string, issuedAt, now time.Time) *agentauthv1.Revocation {
	list, _ := x.bySubject.Get(key{value: NormalDelegated(name), delegated: true})
	return first(list, issuedAt, now)
}

// RefusingClass returns a revocation that refuses, at now, the caller of class called value, for a credential
// issued at issuedAt, or nil: a user by the name the token service gives them (RefusingDelegated), an agent or a
// transaction by its value as each kind of its class, under any issuer.
func (x *Index) RefusingClass(class Class, value string, issuedAt, now time.Time) *agentauthv1.Revocation {
	if class == ClassUser {
		return x.RefusingDelegated(value, issuedAt, now)
	}
	for _, k := range class.Kinds() {
		if r := x.Refusing(k, "", value, issuedAt, now); r != nil {
			return r
		}
	}
	return nil
}

// RefusingCall returns the first revocation that refuses, at now, a subject of c, and which subject; or nil.
func (x *Index) RefusingCall(c Call, now time.Time) (*agentauthv1.Revocation, Check) {
	for _, ch := range c.Checks() {
		if r := x.RefusingClass(ch.Class, ch.Value, ch.IssuedAt, now); r != nil {
			return r, ch
		}
	}
	return nil, Check{}
}

func first(list []*agentauthv1.Revocation, issuedAt, now time.Time) *agentauthv1.Revocation {
	for _, r := range list {
		if Refuses(r, issuedAt, now) {
			return r
		}
	}
	return nil
}
