// Package kubestore keeps the controller's state (store.Backend) in the Kubernetes API, so that every controller
// replica shares it: one Secret per record, in one namespace, labelled with the store's name and the record's
// collection, holding the record's key and its protobuf encoding. Secrets, not ConfigMaps, because the CA key and
// the join tokens are secret.
//
// Reads are served from a shared informer's cache, and Subscribe is driven by that informer, so a write made
// through any instance reaches the subscribers of every instance. A write returns once this instance's informer
// has seen it (read-your-writes), after the local subscribers heard of it.
//
// The version is the API server's resourceVersion: a write's version is the resourceVersion of the Secret it wrote
// (or of its deletion), and Version is the highest this instance has seen. Since Kubernetes 1.35 resourceVersions
// are comparable integers (k8s.io/apimachinery/pkg/util/resourceversion); they come from etcd's single revision
// counter, so they grow with every write, across replicas, without a counter object that every write would
// contend on. Two replicas that have seen the same writes report the same version.
//
// Compare-and-change operations (UseJoinToken, MarkSET) use the API server's optimistic concurrency
// (resourceVersion preconditions, create-if-absent), so they are atomic across replicas. Multi-record writes
// (Replace, DeleteFunc, PruneSETs) are not one transaction: they apply record by record, and a watcher may see
// the steps one at a time.
package kubestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
)

// Labels and the Secret type of the records.
const (
	// LabelStore names the store a record belongs to (Options.Name).
	LabelStore = "agentauth.io/store"
	// LabelCollection is the record's collection (store.BucketPolicies, …).
	LabelCollection = "agentauth.io/collection"
	// LabelSETs marks a SET de-duplication record of the store it names. It is a separate label so the
	// informer, which selects on LabelStore, does not cache SET records.
	LabelSETs = "agentauth.io/store-sets"
	// LabelDirect marks a record of the store it names that is read from the API server on each use, not cached
	// (SSF stream ids, witnessed audit checkpoints).
	LabelDirect = "agentauth.io/store-direct"
	// SecretType is the type of every Secret the store writes.
	SecretType corev1.SecretType = "agentauth.io/store-record"

	dataKey   = "key"
	dataValue = "value"
	dataUntil = "until"
	byBucket  = "bucket"
)

// Defaults.
const (
	DefaultName    = "agentauth"
	DefaultTimeout = 30 * time.Second
)

// Options configure New.
type Options struct {
	// Namespace holds the records; required.
	Namespace string
	// Name prefixes the Secrets' names and is the LabelStore value, so several stores can share a namespace.
	// Default DefaultName.
	Name string
	// Timeout bounds each operation, including the wait for the informer to see a write. Default DefaultTimeout.
	Timeout time.Duration
	// Logger; default a no-op.
	Logger *zap.Logger
}

// Store is a store.Backend in the Kubernetes API. It is safe for concurrent use.
type Store struct {
	opts     Options
	secrets  typedcorev1.SecretInterface
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	stop     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	broken   chan struct{}
	decoders map[string]func(key string, raw []byte) (proto.Message, error)

	mu      sync.Mutex
	version uint64
	seen    map[string]uint64 // Secret name → resourceVersion, for records the handler has delivered
	changed chan struct{}     // closed and replaced whenever seen or version changes

	subMu   sync.Mutex
	subs    map[uint64]func([]store.Change)
	nextSub uint64

	policies     *collection[*agentauthv1.Policy]
	revocations  *collection[*agentauthv1.Revocation]
	risk         *collection[*agentauthv1.RiskState]
	trustBundles *collection[*agentauthv1.TrustBundle]
	issuedCerts  *collection[*agentauthv1.IssuedCert]
	ca           *collection[*agentauthv1.CAMaterial]
	joinTokens   *collection[*agentauthv1.JoinToken]
}

var _ store.Backend = (*Store)(nil)

// New starts the store's informer and returns once its cache holds the records (ctx bounds that wait).
func New(ctx context.Context, client kubernetes.Interface, opts Options) (*Store, error) {
	if opts.Namespace == "" {
		return nil, errors.New("kubestore: no namespace")
	}
	if opts.Name == "" {
		opts.Name = DefaultName
	}
	// The name prefixes Secret names (with room for the collection and the key's hash) and is a label value.
	if errs := validation.IsDNS1123Label(opts.Name); len(errs) > 0 || len(opts.Name) > 40 {
		return nil, fmt.Errorf("kubestore: name %q: a DNS label of at most 40 characters: %v", opts.Name, errs)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	s := &Store{
		opts:     opts,
		secrets:  client.CoreV1().Secrets(opts.Namespace),
		stop:     make(chan struct{}),
		broken:   make(chan struct{}),
		decoders: map[string]func(string, []byte) (proto.Message, error){},
		seen:     map[string]uint64{},
		changed:  make(chan struct{}),
		subs:     map[uint64]func([]store.Change){},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.policies = newCollection(s, store.BucketPolicies, (*agentauthv1.Policy).GetId)
	s.revocations = newCollection(s, store.BucketRevocations, (*agentauthv1.Revocation).GetId)
	s.risk = newCollection(s, store.BucketRisk, func(r *agentauthv1.RiskState) string { return r.GetSubject().Key() })
	s.trustBundles = newCollection(s, store.BucketTrustBundles, (*agentauthv1.TrustBundle).GetTrustDomain)
	s.issuedCerts = newCollection(s, store.BucketIssuedCerts, (*agentauthv1.IssuedCert).GetSerial)
	s.ca = newCollection(s, store.BucketCA, (*agentauthv1.CAMaterial).GetName)
	s.joinTokens = newCollection(s, store.BucketJoinTokens, (*agentauthv1.JoinToken).GetId)

	s.factory = informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelStore + "=" + opts.Name }))
	s.informer = s.factory.Core().V1().Secrets().Informer()
	err := s.informer.AddIndexers(cache.Indexers{byBucket: func(obj any) ([]string, error) {
		return []string{obj.(*corev1.Secret).Labels[LabelCollection]}, nil
	}})
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	reg, err := s.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.handle(obj, false) },
		UpdateFunc: func(_, obj any) { s.handle(obj, false) },
		DeleteFunc: func(obj any) { s.handle(obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	s.factory.Start(s.stop)
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		_ = s.Close()
		return nil, fmt.Errorf("kubestore: namespace %s: the informer did not sync: %w", opts.Namespace, ctx.Err())
	}
	return s, nil
}

// Close stops the informer; subscribers are dropped.
func (s *Store) Close() error {
	s.subMu.Lock()
	clear(s.subs)
	s.subMu.Unlock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
		s.cancel()
		s.factory.Shutdown()
	}
	return nil
}

// Policies implements store.Backend.
func (s *Store) Policies() store.Collection[*agentauthv1.Policy] { return s.policies }

// Revocations implements store.Backend.
func (s *Store) Revocations() store.Collection[*agentauthv1.Revocation] { return s.revocations }

// Risk implements store.Backend.
func (s *Store) Risk() store.Collection[*agentauthv1.RiskState] { return s.risk }

// TrustBundles implements store.Backend.
func (s *Store) TrustBundles() store.Collection[*agentauthv1.TrustBundle] { return s.trustBundles }

// IssuedCerts implements store.Backend.
func (s *Store) IssuedCerts() store.Collection[*agentauthv1.IssuedCert] { return s.issuedCerts }

// CA implements store.Backend.
func (s *Store) CA() store.Collection[*agentauthv1.CAMaterial] { return s.ca }

// JoinTokens implements store.Backend.
func (s *Store) JoinTokens() store.Collection[*agentauthv1.JoinToken] { return s.joinTokens }

// Version is the highest resourceVersion of a record write (or deletion) this instance has seen.
func (s *Store) Version() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version, nil
}

// Subscribe implements store.Backend: fn hears of every change the informer delivers after Subscribe returns,
// whichever instance made it.
func (s *Store) Subscribe(fn func([]store.Change)) (cancel func()) {
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

// Broken is never closed: the informer retries a lost API server on its own, and writes fail meanwhile.
func (s *Store) Broken() <-chan struct{} { return s.broken }

// Err is always nil; see Broken.
func (s *Store) Err() error { return nil }

// handle runs on the informer's goroutine, one event at a time, in the order the API server committed them.
func (s *Store) handle(obj any, deleted bool) {
	var rv uint64
	sec, ok := obj.(*corev1.Secret)
	if tomb, isTomb := obj.(cache.DeletedFinalStateUnknown); isTomb {
		// The deletion happened while the watch was down; the relist that found it is at LastSyncResourceVersion.
		sec, ok = tomb.Obj.(*corev1.Secret)
		rv, _ = strconv.ParseUint(s.informer.LastSyncResourceVersion(), 10, 64)
	} else if ok {
		rv = parseRV(sec.ResourceVersion)
	}
	if !ok {
		return
	}
	bucket, key := sec.Labels[LabelCollection], string(sec.Data[dataKey])
	ch := store.Change{Bucket: bucket, Key: key, Version: rv}
	if !deleted {
		decode := s.decoders[bucket]
		if decode == nil {
			s.opts.Logger.Warn("kubestore: a record of no known collection", zap.String("secret", sec.Name), zap.String("collection", bucket))
			return
		}
		v, err := decode(key, sec.Data[dataValue])
		if err != nil {
			s.opts.Logger.Error("kubestore: a record does not decode; ignored", zap.String("secret", sec.Name), zap.Error(err))
			return
		}
		ch.Value = v
	}
	s.mu.Lock()
	s.version = max(s.version, rv)
	s.mu.Unlock()

	s.subMu.Lock()
	fns := make([]func([]store.Change), 0, len(s.subs))
	for _, fn := range s.subs {
		fns = append(fns, fn)
	}
	s.subMu.Unlock()
	for _, fn := range fns {
		fn([]store.Change{ch})
	}

	s.mu.Lock()
	if deleted {
		delete(s.seen, sec.Name)
	} else {
		s.seen[sec.Name] = rv
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// await waits until done (called with s.mu held) is true, or ctx ends.
func (s *Store) await(ctx context.Context, done func() bool) error {
	for {
		s.mu.Lock()
		if done() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("kubestore: waiting for the informer to see a write: %w", ctx.Err())
		}
	}
}

// awaitWritten waits until the handler has delivered the Secret name at resourceVersion rv or later, and returns
// rv.
func (s *Store) awaitWritten(ctx context.Context, name string, rv uint64) (uint64, error) {
	err := s.await(ctx, func() bool { seen, ok := s.seen[name]; return ok && seen >= rv })
	return rv, err
}

// awaitDeleted waits until the handler has delivered the deletion of every Secret in names, and returns the
// version then.
func (s *Store) awaitDeleted(ctx context.Context, names ...string) (uint64, error) {
	err := s.await(ctx, func() bool {
		for _, n := range names {
			if _, ok := s.seen[n]; ok {
				return false
			}
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return s.Version()
}

func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.opts.Timeout)
}

// secretName is the Secret that holds key in bucket: a hash of the key, since keys (SPIFFE IDs, subject keys)
// are not valid object names and may be longer than one.
func (s *Store) secretName(bucket, key string) string {
	sum := sha256.Sum256([]byte(key))
	return s.opts.Name + "-" + strings.ReplaceAll(bucket, "_", "-") + "-" + hex.EncodeToString(sum[:20])
}

func (s *Store) record(bucket, key string, raw []byte) *corev1.Secret {
	return s.secret(LabelStore, bucket, key, raw)
}

// secret is the Secret holding raw under key in bucket, labelled kind (LabelStore: watched; LabelDirect: not).
func (s *Store) secret(kind, bucket, key string, raw []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.secretName(bucket, key),
			Namespace: s.opts.Namespace,
			Labels:    map[string]string{kind: s.opts.Name, LabelCollection: bucket},
		},
		Type: SecretType,
		Data: map[string][]byte{dataKey: []byte(key), dataValue: raw},
	}
}

// cached returns the informer's copy of the Secret name (not to be modified).
func (s *Store) cached(name string) (*corev1.Secret, bool) {
	obj, ok, err := s.informer.GetIndexer().GetByKey(s.opts.Namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	return obj.(*corev1.Secret), true
}

func parseRV(rv string) uint64 {
	v, _ := strconv.ParseUint(rv, 10, 64)
	return v
}

// apiErr wraps an API error, mapping NotFound to store.ErrNotFound.
func apiErr(what string, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("kubestore: %s: %w: %w", what, store.ErrNotFound, err)
	}
	return fmt.Errorf("kubestore: %s: %w", what, err)
}

// collection is one collection of records.
type collection[T proto.Message] struct {
	s      *Store
	bucket string
	key    func(T) string
}

func newCollection[T proto.Message](s *Store, bucket string, key func(T) string) *collection[T] {
	c := &collection[T]{s: s, bucket: bucket, key: key}
	s.decoders[bucket] = func(key string, raw []byte) (proto.Message, error) { return c.decode(key, raw) }
	return c
}

func (c *collection[T]) decode(key string, raw []byte) (T, error) {
	var zero T
	v := zero.ProtoReflect().New().Interface().(T)
	if err := proto.Unmarshal(raw, v); err != nil {
		return zero, fmt.Errorf("kubestore: %s %q: %w: %v", c.bucket, key, store.ErrCorrupt, err)
	}
	if got := c.key(v); got != key {
		return zero, fmt.Errorf("kubestore: %s %q: %w: the value names key %q", c.bucket, key, store.ErrCorrupt, got)
	}
	return v, nil
}

// Put implements store.Collection.
func (c *collection[T]) Put(v T) (uint64, error) {
	key := c.key(v)
	if err := store.CheckKey(c.bucket, key); err != nil {
		return 0, err
	}
	raw, err := store.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("kubestore: %s %q: %w", c.bucket, key, err)
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	return c.s.put(ctx, c.s.record(c.bucket, key, raw))
}

// Create implements store.Collection with the API server's create-if-absent: of several instances creating the
// record, one creates it and the others read it back from the API server (the informer may not have it yet).
func (c *collection[T]) Create(v T) (T, error) {
	var zero T
	key := c.key(v)
	if err := store.CheckKey(c.bucket, key); err != nil {
		return zero, err
	}
	raw, err := store.Marshal(v)
	if err != nil {
		return zero, fmt.Errorf("kubestore: %s %q: %w", c.bucket, key, err)
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	what := c.bucket + " " + strconv.Quote(key)
	rec := c.s.record(c.bucket, key, raw)
	got, err := c.s.secrets.Create(ctx, rec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = c.s.secrets.Get(ctx, rec.Name, metav1.GetOptions{})
	}
	if err != nil {
		return zero, apiErr(what, err)
	}
	if string(got.Data[dataKey]) != key {
		return zero, fmt.Errorf("kubestore: %s: %w: the record names key %q", what, store.ErrCorrupt, got.Data[dataKey])
	}
	stored, err := c.decode(key, got.Data[dataValue])
	if err != nil {
		return zero, err
	}
	// Read-your-writes, for the winner and the losers alike: Get from the cache finds what Create returned.
	if _, err := c.s.awaitWritten(ctx, got.Name, parseRV(got.ResourceVersion)); err != nil {
		return zero, err
	}
	return stored, nil
}

// put creates or overwrites rec unless the cache already holds the same bytes.
func (s *Store) put(ctx context.Context, rec *corev1.Secret) (uint64, error) {
	if cur, ok := s.cached(rec.Name); ok && bytes.Equal(cur.Data[dataKey], rec.Data[dataKey]) &&
		bytes.Equal(cur.Data[dataValue], rec.Data[dataValue]) {
		return s.Version()
	}
	what := rec.Labels[LabelCollection] + " " + strconv.Quote(string(rec.Data[dataKey]))
	got, err := s.secrets.Create(ctx, rec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Last writer wins, as with bbolt: an unconditional update.
		got, err = s.secrets.Update(ctx, rec, metav1.UpdateOptions{})
	}
	if err != nil {
		return 0, apiErr(what, err)
	}
	return s.awaitWritten(ctx, got.Name, parseRV(got.ResourceVersion))
}

// Get implements store.Collection, from the informer's cache.
func (c *collection[T]) Get(key string) (T, error) {
	sec, ok := c.s.cached(c.s.secretName(c.bucket, key))
	if !ok || string(sec.Data[dataKey]) != key {
		var zero T
		return zero, fmt.Errorf("kubestore: %s %q: %w", c.bucket, key, store.ErrNotFound)
	}
	return c.decode(key, sec.Data[dataValue])
}

// List implements store.Collection, from the informer's cache, in key order.
func (c *collection[T]) List() ([]T, error) {
	objs, err := c.s.informer.GetIndexer().ByIndex(byBucket, c.bucket)
	if err != nil {
		return nil, fmt.Errorf("kubestore: %w", err)
	}
	slices.SortFunc(objs, func(a, b any) int {
		return bytes.Compare(a.(*corev1.Secret).Data[dataKey], b.(*corev1.Secret).Data[dataKey])
	})
	var out []T
	for _, obj := range objs {
		sec := obj.(*corev1.Secret)
		v, err := c.decode(string(sec.Data[dataKey]), sec.Data[dataValue])
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Delete implements store.Collection.
func (c *collection[T]) Delete(key string) (uint64, error) {
	if err := store.CheckKey(c.bucket, key); err != nil {
		return 0, err
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	name := c.s.secretName(c.bucket, key)
	if err := c.s.secrets.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return 0, apiErr(c.bucket+" "+strconv.Quote(key), err)
	}
	return c.s.awaitDeleted(ctx, name)
}

// DeleteFunc implements store.Collection. Each record is deleted on the condition that it is still the version
// drop judged; one changed meanwhile by another instance is left alone.
func (c *collection[T]) DeleteFunc(drop func(T) bool) (int, error) {
	objs, err := c.s.informer.GetIndexer().ByIndex(byBucket, c.bucket)
	if err != nil {
		return 0, fmt.Errorf("kubestore: %w", err)
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	var gone []string
	for _, obj := range objs {
		sec := obj.(*corev1.Secret)
		v, err := c.decode(string(sec.Data[dataKey]), sec.Data[dataValue])
		if err != nil {
			return 0, err
		}
		if !drop(v) {
			continue
		}
		rv := sec.ResourceVersion
		err = c.s.secrets.Delete(ctx, sec.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		switch {
		case err == nil:
			gone = append(gone, sec.Name)
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		default:
			return len(gone), apiErr(c.bucket, err)
		}
	}
	_, err = c.s.awaitDeleted(ctx, gone...)
	return len(gone), err
}

// Replace implements store.Collection, record by record: stale records are deleted, then new and changed ones
// put.
func (c *collection[T]) Replace(vs []T) (uint64, error) {
	want := make(map[string]*corev1.Secret, len(vs))
	for _, v := range vs {
		key := c.key(v)
		if err := store.CheckKey(c.bucket, key); err != nil {
			return 0, err
		}
		if _, dup := want[key]; dup {
			return 0, fmt.Errorf("kubestore: %s: %w: duplicate key %q", c.bucket, autherr.ErrMalformed, key)
		}
		raw, err := store.Marshal(v)
		if err != nil {
			return 0, fmt.Errorf("kubestore: %s %q: %w", c.bucket, key, err)
		}
		want[key] = c.s.record(c.bucket, key, raw)
	}
	objs, err := c.s.informer.GetIndexer().ByIndex(byBucket, c.bucket)
	if err != nil {
		return 0, fmt.Errorf("kubestore: %w", err)
	}
	ctx, cancel := c.s.opCtx()
	defer cancel()
	var gone []string
	for _, obj := range objs {
		sec := obj.(*corev1.Secret)
		if _, keep := want[string(sec.Data[dataKey])]; keep {
			continue
		}
		if err := c.s.secrets.Delete(ctx, sec.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, apiErr(c.bucket, err)
		}
		gone = append(gone, sec.Name)
	}
	if _, err := c.s.awaitDeleted(ctx, gone...); err != nil {
		return 0, err
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, err := c.s.put(ctx, want[k]); err != nil {
			return 0, err
		}
	}
	return c.s.Version()
}
