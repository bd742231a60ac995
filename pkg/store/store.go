package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// Errors callers branch on.
var (
	// ErrNotFound: no record under that key.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: the store file is damaged (bbolt's pages do not hold together), or a stored value does not
	// decode or does not match its key.
	ErrCorrupt = errors.New("corrupt")
	// ErrLocked: another process holds the store file open.
	ErrLocked = errors.New("store is locked by another process")
	// ErrAbsent: Options.MustExist is set and the file is missing or empty.
	ErrAbsent = errors.New("no state: the file is missing or empty")
)

// Bucket names. A Change names the bucket it happened in.
const (
	BucketPolicies     = "policies"
	BucketRevocations  = "revocations"
	BucketRisk         = "risk"
	BucketTrustBundles = "trust_bundles"
	BucketIssuedCerts  = "issued_certs"
	BucketCA           = "ca"
	BucketJoinTokens   = "join_tokens"
	BucketWitnessed    = "witnessed_checkpoints"
	bucketSETs         = "set_jti"
	bucketMeta         = "meta"
)

var versionKey = []byte("version")

// maxKeyLen bounds keys well below bbolt's 32 KiB limit; ids, SPIFFE IDs and subject keys are far shorter.
const maxKeyLen = 2048

const defaultLockTimeout = time.Second

// Options configure Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the file. Default 1s.
	LockTimeout time.Duration
	// MustExist refuses (ErrAbsent) to create the file, or to initialise one of 0 bytes, instead of starting
	// with empty state.
	MustExist bool
}

// Change is one committed change. Value is nil when the record was deleted.
type Change struct {
	Bucket  string
	Key     string
	Value   proto.Message
	Version uint64
}

// Store is the controller's persistent state. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	// broken is closed, and brokenErr set, once a transaction found the file damaged (see guard).
	broken     chan struct{}
	brokenOnce sync.Once
	brokenErr  error

	// writeMu spans a write transaction and the notification of its changes, so subscribers see changes in
	// commit order. bbolt serialises writers anyway, so this costs no concurrency.
	writeMu sync.Mutex

	subMu   sync.Mutex
	subs    map[uint64]func([]Change)
	nextSub uint64

	policies     *boltCollection[*agentauthv1.Policy]
	revocations  *boltCollection[*agentauthv1.Revocation]
	risk         *boltCollection[*agentauthv1.RiskState]
	trustBundles *boltCollection[*agentauthv1.TrustBundle]
	issuedCerts  *boltCollection[*agentauthv1.IssuedCert]
	ca           *boltCollection[*agentauthv1.CAMaterial]
	joinTokens   *boltCollection[*agentauthv1.JoinToken]
	witnessed    *boltCollection[*agentauthv1.WitnessedCheckpoint]
}

// Open opens or creates the store file at path (mode 0600; a missing parent directory is created 0700).
// A second process opening the same file gets ErrLocked after opts.LockTimeout. A damaged file gets ErrCorrupt:
// Open checks every page reachable from the file's root, runs bbolt's consistency check and decodes every value,
// so damage is found here rather than by a later transaction.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultLockTimeout
	}
	switch err := exists(path); {
	case errors.Is(err, ErrAbsent):
		if opts.MustExist {
			return nil, err
		}
	case err != nil:
		return nil, err
	default:
		if err := verifyFile(path, opts.LockTimeout); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := openBolt(path, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, broken: make(chan struct{})}
	err = s.guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, b := range []string{BucketPolicies, BucketRevocations, BucketRisk, BucketTrustBundles,
				BucketIssuedCerts, BucketCA, BucketJoinTokens, BucketWitnessed, bucketSETs, bucketSSFStreams, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("store: init %s: %w", path, err)
	}
	s.subs = make(map[uint64]func([]Change))
	s.policies = newCollection(s, BucketPolicies, func() *agentauthv1.Policy { return new(agentauthv1.Policy) },
		(*agentauthv1.Policy).GetId)
	s.revocations = newCollection(s, BucketRevocations, func() *agentauthv1.Revocation { return new(agentauthv1.Revocation) },
		(*agentauthv1.Revocation).GetId)
	s.risk = newCollection(s, BucketRisk, func() *agentauthv1.RiskState { return new(agentauthv1.RiskState) },
		func(r *agentauthv1.RiskState) string { return r.GetSubject().Key() })
	s.trustBundles = newCollection(s, BucketTrustBundles, func() *agentauthv1.TrustBundle { return new(agentauthv1.TrustBundle) },
		(*agentauthv1.TrustBundle).GetTrustDomain)
	s.issuedCerts = newCollection(s, BucketIssuedCerts, func() *agentauthv1.IssuedCert { return new(agentauthv1.IssuedCert) },
		(*agentauthv1.IssuedCert).GetSerial)
	s.ca = newCollection(s, BucketCA, func() *agentauthv1.CAMaterial { return new(agentauthv1.CAMaterial) },
		(*agentauthv1.CAMaterial).GetName)
	s.joinTokens = newCollection(s, BucketJoinTokens, func() *agentauthv1.JoinToken { return new(agentauthv1.JoinToken) },
		(*agentauthv1.JoinToken).GetId)
	s.witnessed = newCollection(s, BucketWitnessed, func() *agentauthv1.WitnessedCheckpoint { return new(agentauthv1.WitnessedCheckpoint) },
		(*agentauthv1.WitnessedCheckpoint).GetSpiffeId)
	err = s.view(func(tx *bolt.Tx) error {
		if _, err := readVersion(tx); err != nil {
			return err
		}
		for _, c := range []interface{ check(*bolt.Tx) error }{s.policies, s.revocations, s.risk, s.trustBundles,
			s.issuedCerts, s.ca, s.joinTokens, s.witnessed} {
			if err := c.check(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the file. Subscribers are dropped. A broken store (see Broken) is not closed: the transaction
// that panicked may have left bbolt's locks held, and closing would wait for them forever; the file is released
// when the process exits, which is what a broken store calls for.
func (s *Store) Close() error {
	s.subMu.Lock()
	clear(s.subs)
	s.subMu.Unlock()
	if err := s.Err(); err != nil {
		return err
	}
	return s.db.Close()
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.db.Path() }

// Policies are the authorization policies, keyed by id.
func (s *Store) Policies() Collection[*agentauthv1.Policy] { return s.policies }

// Revocations are keyed by id.
func (s *Store) Revocations() Collection[*agentauthv1.Revocation] { return s.revocations }

// Risk states are keyed by their subject's Key().
func (s *Store) Risk() Collection[*agentauthv1.RiskState] { return s.risk }

// TrustBundles are keyed by trust domain.
func (s *Store) TrustBundles() Collection[*agentauthv1.TrustBundle] { return s.trustBundles }

// IssuedCerts are keyed by serial number.
func (s *Store) IssuedCerts() Collection[*agentauthv1.IssuedCert] { return s.issuedCerts }

// CA material is keyed by name.
func (s *Store) CA() Collection[*agentauthv1.CAMaterial] { return s.ca }

// JoinTokens are keyed by id (a hash of the secret); see UseJoinToken.
func (s *Store) JoinTokens() Collection[*agentauthv1.JoinToken] { return s.joinTokens }

// Version is the number of write transactions ever committed to this file.
func (s *Store) Version() (uint64, error) {
	var v uint64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		v, err = readVersion(tx)
		return err
	})
	return v, err
}

// Subscribe calls fn after every committed write with the changes it made, in commit order, before the write
// call returns. fn must be quick and must not write to the store (that would deadlock); reading is fine.
// The returned function unsubscribes.
func (s *Store) Subscribe(fn func([]Change)) (cancel func()) {
	// Taking writeMu means no write is between commit and notification, so fn misses nothing committed after
	// Subscribe returns and sees nothing committed before.
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.subMu.Lock()
	defer s.subMu.Unlock()
	id := s.nextSub
	s.nextSub++
	s.subs[id] = fn
	return func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		delete(s.subs, id)
	}
}

// update runs fn in one write transaction. When fn reports changed, the transaction also advances the version
// counter and commits (bbolt fsyncs before Commit returns), then subscribers hear of the changes fn listed; when
// fn reports no change, the transaction is rolled back and the current version returned.
func (s *Store) update(fn func(tx *bolt.Tx, version uint64) (changes []Change, changed bool, err error)) (uint64, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var (
		version uint64
		changes []Change
	)
	err := s.guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			v, err := readVersion(tx)
			if err != nil {
				return err
			}
			version = v + 1
			var changed bool
			changes, changed, err = fn(tx, version)
			if err != nil {
				return err
			}
			if !changed {
				version = v
				return errNoChange
			}
			var buf [8]byte
			binary.BigEndian.PutUint64(buf[:], version)
			return tx.Bucket([]byte(bucketMeta)).Put(versionKey, buf[:])
		})
	})
	if errors.Is(err, errNoChange) {
		return version, nil
	}
	if err != nil {
		return 0, err
	}
	if len(changes) > 0 {
		s.notify(changes)
	}
	return version, nil
}

// errNoChange rolls back a transaction that changed nothing; update turns it into success.
var errNoChange = errors.New("no change")

func (s *Store) notify(changes []Change) {
	s.subMu.Lock()
	fns := make([]func([]Change), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		fn(changes)
	}
}

func readVersion(tx *bolt.Tx) (uint64, error) {
	raw := tx.Bucket([]byte(bucketMeta)).Get(versionKey)
	switch len(raw) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(raw), nil
	default:
		return 0, fmt.Errorf("store: %s/version: %w: %d bytes", bucketMeta, ErrCorrupt, len(raw))
	}
}

func checkKey(bucket, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("store: %s: %w: empty key", bucket, autherr.ErrMalformed)
	case len(key) > maxKeyLen:
		return fmt.Errorf("store: %s: %w: key of %d bytes (limit %d)", bucket, autherr.ErrMalformed, len(key), maxKeyLen)
	}
	return nil
}
