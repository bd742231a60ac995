package revocation

import (
	"hash/maphash"
	"slices"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/hamt"
)

// Index holds revocations by id and by subject, for lookups that do not depend on how many revocations there
// are. An Index is immutable: With returns a new one that shares all but what changed with the old, so a sidecar
// replaces its index on every xDS update, and the controller on every write, while readers keep the one they
// hold, without locks.
//
// A revocation is found under its subject (kind, iss, value) and under the same subject with no issuer, which is
// what a lookup that does not know the issuer asks for; a user revocation also under each of its
// delegated_subjects (RefusingDelegated).
type Index struct {
	byID      hamt.Map[string, *agentauthv1.Revocation]
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
	seed := maphash.MakeSeed()
	x := &Index{
		byID:      hamt.New[string, *agentauthv1.Revocation](hamt.StringHasher(seed)),
		bySubject: hamt.New[key, []*agentauthv1.Revocation](keyHasher(seed)),
	}
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

// keys are the keys r is indexed under.
func keys(r *agentauthv1.Revocation) []key {
	s := r.GetSubject()
	kind := KindOf(s)
	value := Normal(kind, s.GetValue())
	ks := make([]key, 0, 2+len(r.GetDelegatedSubjects()))
	ks = append(ks, key{kind: kind, iss: s.GetIss(), value: value})
	if s.GetIss() != "" {
		ks = append(ks, key{kind: kind, value: value})
	}
	for _, n := range r.GetDelegatedSubjects() {
		ks = append(ks, key{value: NormalDelegated(n), delegated: true})
	}
	return ks
}

// With returns x with the revocations of ids in remove dropped, then add put in (each replacing any with its
// id). x is unchanged.
func (x *Index) With(add []*agentauthv1.Revocation, remove []string) *Index {
	next := *x
	for _, id := range remove {
		next.drop(id)
	}
	for _, r := range add {
		next.drop(r.GetId())
		next.byID = next.byID.Set(r.GetId(), r)
		for _, k := range keys(r) {
			list, _ := next.bySubject.Get(k)
			next.bySubject = next.bySubject.Set(k, append(slices.Clip(list), r))
		}
	}
	return &next
}

// drop removes the revocation called id, if any.
func (x *Index) drop(id string) {
	old, ok := x.byID.Get(id)
	if !ok {
		return
	}
	x.byID = x.byID.Del(id)
	for _, k := range keys(old) {
		list, _ := x.bySubject.Get(k)
		if list = slices.DeleteFunc(slices.Clone(list), func(r *agentauthv1.Revocation) bool { return r.GetId() == id }); len(list) == 0 {
			x.bySubject = x.bySubject.Del(k)
		} else {
			x.bySubject = x.bySubject.Set(k, list)
		}
	}
}

// Len returns how many revocations x holds.
func (x *Index) Len() int { return x.byID.Len() }

// Get returns the revocation with the given id.
func (x *Index) Get(id string) (*agentauthv1.Revocation, bool) { return x.byID.Get(id) }

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
