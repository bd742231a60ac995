package xdsserver

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash/fnv"
	"io"
	"slices"
)

// digestBuckets is how many groups contentDigest splits the names into: an update rehashes the groups it touched,
// about changed × resources/digestBuckets entries, instead of sorting and hashing every resource.
const digestBuckets = 256

// contentDigest computes a system version from content only: a two-level hash tree over every resource's name and
// version. Names are grouped by an FNV hash of the name; each group's digest is a SHA-256 over its members in name
// order, and the version is a SHA-256 over the group digests. The same resources give the same version whatever
// updates led to them, on every replica.
type contentDigest struct {
	members [digestBuckets]map[string]string // name → resource version
	sums    [digestBuckets][sha256.Size]byte // zero for an empty group
	dirty   map[int]bool
}

func newContentDigest() *contentDigest {
	d := &contentDigest{dirty: map[int]bool{}}
	for i := range d.members {
		d.members[i] = map[string]string{}
	}
	return d
}

func bucketOf(name string) int {
	h := fnv.New32a()
	io.WriteString(h, name)
	return int(h.Sum32() % digestBuckets)
}

// set records name at version; an empty version removes it.
func (d *contentDigest) set(name, version string) {
	b := bucketOf(name)
	if version == "" {
		delete(d.members[b], name)
	} else {
		d.members[b][name] = version
	}
	d.dirty[b] = true
}

// version rehashes the groups changed since the last call and returns the root, 128 bits in hex.
func (d *contentDigest) version() string {
	var n [binary.MaxVarintLen64]byte
	for b := range d.dirty {
		if len(d.members[b]) == 0 {
			d.sums[b] = [sha256.Size]byte{}
			continue
		}
		h := sha256.New()
		names := make([]string, 0, len(d.members[b]))
		for name := range d.members[b] {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(name)))])
			io.WriteString(h, name)
			io.WriteString(h, d.members[b][name]) // fixed length: a SHA-256 in hex
		}
		h.Sum(d.sums[b][:0])
	}
	clear(d.dirty)
	root := sha256.New()
	for i := range d.sums {
		root.Write(d.sums[i][:])
	}
	return hex.EncodeToString(root.Sum(nil)[:16])
}
