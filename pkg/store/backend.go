package store

import (
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// Backend is the controller's state as its users (the xDS publisher, the CA, the SSF receiver, housekeeping) see
// it. Two implementations: Store, an embedded bbolt file (the default outside Kubernetes), and kubestore, which
// keeps the records in the Kubernetes API so that several controller replicas share them.
//
// Versions only grow. A backend's Subscribe delivers the committed changes it knows of in the order they were
// committed; for bbolt that is before the write call returns, for a shared backend it includes the writes of
// other instances. Operations that check and change a record (MarkSET, UseJoinToken) are atomic across every
// instance sharing the state.
type Backend interface {
	Policies() Collection[*agentauthv1.Policy]
	Revocations() Collection[*agentauthv1.Revocation]
	Risk() Collection[*agentauthv1.RiskState]
	TrustBundles() Collection[*agentauthv1.TrustBundle]
	IssuedCerts() Collection[*agentauthv1.IssuedCert]
	CA() Collection[*agentauthv1.CAMaterial]
	JoinTokens() Collection[*agentauthv1.JoinToken]

	// Version is the version of the state this instance has seen; every write advances it.
	Version() (uint64, error)
	// Subscribe calls fn with each batch of committed changes, in commit order. fn must be quick and must not
	// write to the store; reading is fine. The returned function unsubscribes.
	Subscribe(fn func([]Change)) (cancel func())

	// MarkSET records the SET (issuer, jti) until keepUntil, or fails with ErrReplay if it is recorded and its
	// keepUntil is after now.
	MarkSET(issuer, jti string, keepUntil, now time.Time) error
	// PruneSETs forgets SET records whose keepUntil is not after now and returns how many it removed.
	PruneSETs(now time.Time) (int, error)
	// UseJoinToken marks the join token id used at now and returns it; ErrDenied, ErrReplay or ErrExpired
	// otherwise, changing nothing.
	UseJoinToken(id string, now time.Time) (*agentauthv1.JoinToken, error)

	// SSFStreamID returns the id of the SSF stream remembered for the transmitter issuer, or "" when none is.
	SSFStreamID(issuer string) (string, error)
	// SetSSFStreamID remembers id as the SSF stream created at the transmitter issuer, replacing the one before.
	SetSSFStreamID(issuer, id string) error
	// SwapWitnessed reads the audit checkpoint stored for the sidecar id (nil when none) and stores what next
	// returns, atomically across every instance: two checkpoints of one sidecar are checked one after the other
	// against what the other stored. next returning nil or an error stores nothing; its error is returned as is.
	// Witnessed checkpoints are not announced to subscribers: nothing is served from them.
	SwapWitnessed(id string, next func(old *agentauthv1.WitnessedCheckpoint) (*agentauthv1.WitnessedCheckpoint, error)) error

	// Broken is closed once the backend can no longer be trusted; Err then says why.
	Broken() <-chan struct{}
	Err() error
	Close() error
}

// Collection is one kind of record, each stored under the key its message names (a policy's id, a trust
// bundle's trust domain, …). Writes return the store version they produced.
type Collection[T proto.Message] interface {
	// Put stores v under its key. Putting a value equal to the stored one changes nothing and returns the
	// current version.
	Put(v T) (uint64, error)
	// Create stores v under its key unless a value is stored there, atomically across every instance sharing
	// the state, and returns the stored value: v, or the one there first (then nothing changes). Of several
	// instances creating one record at once, all get the one value that won.
	Create(v T) (T, error)
	// Get returns the value under key, or an error wrapping ErrNotFound.
	Get(key string) (T, error)
	// List returns every value in key order.
	List() ([]T, error)
	// Delete removes the value under key, or returns an error wrapping ErrNotFound and changes nothing.
	Delete(key string) (uint64, error)
	// DeleteFunc removes every value for which drop returns true and returns how many it removed.
	DeleteFunc(drop func(T) bool) (int, error)
	// Replace makes the collection hold exactly vs; two values with the same key are refused.
	Replace(vs []T) (uint64, error)
}

var _ Backend = (*Store)(nil)

// CheckKey refuses an empty key or one longer than any backend stores.
func CheckKey(bucket, key string) error { return checkKey(bucket, key) }

// Marshal encodes v deterministically, so equal messages give equal bytes (how backends detect a no-op Put).
func Marshal(v proto.Message) ([]byte, error) { return marshal(v) }

// SETKey is the key under which MarkSET records (issuer, jti): the issuer with '%' and '|' escaped, '|', the jti.
func SETKey(issuer, jti string) string {
	return strings.NewReplacer("%", "%25", "|", "%7C").Replace(issuer) + "|" + jti
}
