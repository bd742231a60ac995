package xdsserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/agentauth/agentauth/pkg/xds"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// deltaCache serves one resource type to incremental (delta) xDS subscriptions; it is the cache.Cache that
// go-control-plane's ADS server drives. It replaces the library's LinearCache because of how cost grows: on
// every update LinearCache compares each wildcard subscription against every resource and copies its version
// map, twice (when it notifies, and when the ACK opens the next watch), so one revocation costs sidecars ×
// resources. deltaCache serves wildcard subscriptions only (every sidecar gets every resource of a type; the
// server's callbacks refuse named ones), so after any response a subscription holds exactly the state at the
// cache's sequence then. The version map handed to the server for it is therefore one shared, immutable
// snapshot of that state, marked with the sequence; the next answer is computed from the log of names changed
// since, and an ACK that finds nothing new costs a map lookup.
//
// The version map is the server's per-subscription state, which the library forwards to the cache and leaves to
// the cache to interpret (it changes it only for named unsubscriptions, which are refused). The mark lives under
// the empty name, which no resource can have (checkResource), and carries a random epoch, so a client's
// initial_resource_versions cannot forge one; such maps get a full comparison.
//
// Versions depend on content only, never on the history that led to it: a resource's version is the SHA-256 of its
// encoding, and the system version a digest of every resource's name and version (contentDigest). Controller
// replicas that serve the same state therefore report the same versions, and a sidecar that moves from one to
// another, sending the versions it holds, is sent nothing (only the empty first answer).
type deltaCache struct {
	typeURL  string
	markFrom string // the epoch and a separator: a mark is markFrom + sequence

	mu        sync.Mutex
	seq       uint64 // bumped by each update that changed something
	resources map[string]*cachedResource
	digest    *contentDigest    // of resources
	version   string            // the system version: digest's root
	snapshot  map[string]string // name → version of every resource, and the mark of seq; never modified
	changes   []change          // in sequence order
	floor     uint64            // changes after floor are all in changes; a mark older than floor gets a full comparison
	watches   map[uint64]*deltaWatch
	lastWatch uint64
}

// markKey is the name the sequence mark is stored under in a version map.
const markKey = ""

// maxChanges bounds the change log; past it the older half is dropped, and a subscription that far behind
// (one whose ACKs lag behind a burst of that many changes) is compared in full.
const maxChanges = 8192

type cachedResource struct {
	value   []byte // the deterministic encoding, shared by every response that carries it
	version string // its SHA-256, as go-control-plane's caches compute resource versions
}

type change struct {
	seq  uint64
	name string
}

type deltaWatch struct {
	req *cache.DeltaRequest
	sub cache.Subscription
	out chan cache.DeltaResponse
}

var (
	errDeltaOnly = errors.New("xds: this controller serves incremental xDS only: use DeltaAggregatedResources")
	errNamed     = errors.New("xds: this controller sends every resource of a type to every sidecar: " +
		"subscribe with a wildcard (no resource names), not by name")
)

func newDeltaCache(typeURL string, initial map[string]types.Resource) (*deltaCache, error) {
	epoch := make([]byte, 16)
	if _, err := rand.Read(epoch); err != nil {
		return nil, fmt.Errorf("xds: cache epoch: %w", err)
	}
	c := &deltaCache{typeURL: typeURL, markFrom: hex.EncodeToString(epoch) + ":",
		resources: make(map[string]*cachedResource, len(initial)), digest: newContentDigest(), watches: map[uint64]*deltaWatch{}}
	for name, res := range initial {
		cr, err := newCachedResource(res)
		if err != nil {
			return nil, fmt.Errorf("xds: %s %q: %w", xds.ShortType(typeURL), name, err)
		}
		c.resources[name] = cr
		c.digest.set(name, cr.version)
	}
	c.snapshot = c.snapshotWith(nil)
	c.version = c.digest.version()
	return c, nil
}

// snapshotWith is the version map of the current state at the current sequence; names lists what changed since
// the previous snapshot, so the rest is copied from it.
func (c *deltaCache) snapshotWith(names []string) map[string]string {
	var m map[string]string
	if c.snapshot == nil {
		m = make(map[string]string, len(c.resources)+1)
		for name, cr := range c.resources {
			m[name] = cr.version
		}
	} else {
		m = maps.Clone(c.snapshot)
		for _, name := range names {
			if cr, ok := c.resources[name]; ok {
				m[name] = cr.version
			} else {
				delete(m, name)
			}
		}
	}
	m[markKey] = c.markFrom + strconv.FormatUint(c.seq, 10)
	return m
}

func newCachedResource(res types.Resource) (*cachedResource, error) {
	value, err := cache.MarshalResource(res)
	if err != nil {
		return nil, err
	}
	return &cachedResource{value: value, version: cache.HashResource(value)}, nil
}

// update stores set and removes deleted, then answers every watch that the change concerns. Resources whose
// encoding did not change, and deletions of names not held, are no change at all.
func (c *deltaCache) update(set map[string]types.Resource, deleted []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var changed []string
	var errs []error
	for name, res := range set {
		cr, err := newCachedResource(res)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", xds.ShortType(c.typeURL), name, err))
			continue
		}
		if old, ok := c.resources[name]; ok && old.version == cr.version {
			continue
		}
		c.resources[name] = cr
		changed = append(changed, name)
	}
	for _, name := range deleted {
		if _, ok := c.resources[name]; ok {
			delete(c.resources, name)
			changed = append(changed, name)
		}
	}
	if len(changed) == 0 {
		return errors.Join(errs...)
	}
	c.seq++
	for _, name := range changed {
		var v string
		if cr, ok := c.resources[name]; ok {
			v = cr.version
		}
		c.digest.set(name, v)
	}
	c.version = c.digest.version()
	for _, name := range changed {
		c.changes = append(c.changes, change{c.seq, name})
	}
	c.snapshot = c.snapshotWith(changed)
	if len(c.changes) > maxChanges {
		drop := len(c.changes) / 2
		for drop < len(c.changes) && c.changes[drop].seq == c.changes[drop-1].seq {
			drop++ // never split one update's changes
		}
		c.floor = c.changes[drop-1].seq
		c.changes = slices.Delete(c.changes, 0, drop)
	}
	// Subscriptions at the same mark miss the same things: the first one's answer serves them all.
	answers := map[uint64]*deltaAnswer{}
	for id, w := range c.watches {
		if resp := c.respond(w, false, answers); resp != nil {
			w.out <- resp
			delete(c.watches, id)
		}
	}
	return errors.Join(errs...)
}

// systemVersion is the system version of the current state, as responses carry it.
func (c *deltaCache) systemVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

// CreateDeltaWatch answers at once when the subscription is missing something, and otherwise waits for the next
// update that concerns it.
func (c *deltaCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	if req.GetTypeUrl() != c.typeURL {
		return nil, fmt.Errorf("xds: request for %s on the %s cache", req.GetTypeUrl(), c.typeURL)
	}
	if !sub.IsWildcard() || len(sub.SubscribedResources()) > 0 {
		return nil, errNamed
	}
	w := &deltaWatch{req: req, sub: sub, out: out}
	// The first request is answered even when there is nothing: it is how the client learns that it holds
	// everything there is.
	replyEmpty := req.GetResponseNonce() == ""

	c.mu.Lock()
	defer c.mu.Unlock()
	if resp := c.respond(w, replyEmpty, nil); resp != nil {
		w.out <- resp
		return nil, nil
	}
	c.lastWatch++
	id := c.lastWatch
	c.watches[id] = w
	return func() {
		c.mu.Lock()
		delete(c.watches, id)
		c.mu.Unlock()
	}, nil
}

// respond computes what w's subscription is missing; nil when nothing (and replyEmpty is false). answers, if not
// nil, holds the answers already computed for marked subscriptions, by mark, and receives new ones. c.mu is held.
func (c *deltaCache) respond(w *deltaWatch, replyEmpty bool, answers map[uint64]*deltaAnswer) *deltaResponse {
	known := w.sub.ReturnedResources()
	since, marked := c.markOf(known)
	if marked && since == c.seq && !replyEmpty {
		return nil
	}
	if a, ok := answers[since]; marked && ok {
		if a == nil {
			return nil
		}
		return &deltaResponse{req: w.req, deltaAnswer: a}
	}
	var updated, removed []string
	if marked {
		updated, removed = c.diff(known, c.changedSince(since))
	} else {
		updated, removed = c.fullDiff(known)
	}
	var a *deltaAnswer
	if len(updated) > 0 || len(removed) > 0 || replyEmpty {
		a = &deltaAnswer{version: c.version, removed: removed, returned: c.snapshot}
		slices.Sort(updated)
		for _, name := range updated {
			cr := c.resources[name]
			a.resources = append(a.resources, &discovery.Resource{Name: name, Version: cr.version,
				Resource: &anypb.Any{TypeUrl: c.typeURL, Value: cr.value}})
		}
	}
	if marked && answers != nil {
		answers[since] = a
	}
	if a == nil {
		return nil
	}
	return &deltaResponse{req: w.req, deltaAnswer: a}
}

// markOf is the sequence known's mark names, if this cache wrote it and the change log still reaches back to it.
func (c *deltaCache) markOf(known map[string]string) (uint64, bool) {
	rest, ok := strings.CutPrefix(known[markKey], c.markFrom)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || seq < c.floor || seq > c.seq {
		return 0, false
	}
	return seq, true
}

// changedSince lists the names changed after seq, each once.
func (c *deltaCache) changedSince(seq uint64) []string {
	i, _ := slices.BinarySearchFunc(c.changes, seq+1, func(ch change, s uint64) int {
		switch {
		case ch.seq < s:
			return -1
		case ch.seq > s:
			return 1
		}
		return 0
	})
	names := make([]string, 0, len(c.changes)-i)
	for _, ch := range c.changes[i:] {
		names = append(names, ch.name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// diff compares known with the current state for names only.
func (c *deltaCache) diff(known map[string]string, names []string) (updated, removed []string) {
	for _, name := range names {
		cr, exists := c.resources[name]
		v, isKnown := known[name]
		switch {
		case exists && (!isKnown || v != cr.version):
			updated = append(updated, name)
		case !exists && isKnown:
			removed = append(removed, name)
		}
	}
	return updated, removed
}

// fullDiff compares known, which this cache did not write (a client's initial versions), with the whole state.
func (c *deltaCache) fullDiff(known map[string]string) (updated, removed []string) {
	for name, cr := range c.resources {
		if v, ok := known[name]; !ok || v != cr.version {
			updated = append(updated, name)
		}
	}
	for name := range known {
		if _, ok := c.resources[name]; !ok && name != markKey {
			removed = append(removed, name)
		}
	}
	return updated, removed
}

// CreateWatch refuses state-of-the-world subscriptions (the server's callbacks refuse those streams first).
func (c *deltaCache) CreateWatch(*cache.Request, cache.Subscription, chan cache.Response) (func(), error) {
	return nil, errDeltaOnly
}

// Fetch refuses REST fetches, which are state-of-the-world.
func (c *deltaCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errDeltaOnly
}

// deltaResponse is an answer to one watch.
type deltaResponse struct {
	req *discovery.DeltaDiscoveryRequest
	*deltaAnswer
}

// deltaAnswer is what a response carries; it may be shared by many responses, which only read it (concurrent
// marshalling of one message is safe in protobuf-go).
type deltaAnswer struct {
	version   string
	resources []*discovery.Resource
	removed   []string
	returned  map[string]string
}

// GetDeltaDiscoveryResponse builds a new message on each call: the server stamps a nonce on it.
func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discovery.DeltaDiscoveryResponse, error) {
	return &discovery.DeltaDiscoveryResponse{Resources: r.resources, RemovedResources: r.removed,
		TypeUrl: r.req.GetTypeUrl(), SystemVersionInfo: r.version}, nil
}

func (r *deltaResponse) GetDeltaRequest() *discovery.DeltaDiscoveryRequest { return r.req }
func (r *deltaResponse) GetSystemVersion() (string, error)                 { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                        { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string              { return r.returned }
func (r *deltaResponse) GetReturnedResources() map[string]string           { return r.returned }
func (r *deltaResponse) GetContext() context.Context                       { return context.Background() }

var (
	_ cache.Cache         = (*deltaCache)(nil)
	_ cache.DeltaResponse = (*deltaResponse)(nil)
)
