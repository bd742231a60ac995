package audit

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Prover computes the consistency proofs of a growing log, reading each record once: it keeps the compact range
// at the size it last reached and where the next record starts on disk, so proving from that size on reads only
// the records added since. ConsistencyProof gives the same proofs from the whole log. A Prover is not safe for
// concurrent use.
type Prover struct {
	dir    string
	size   uint64
	hashes [][]byte // the compact range [0, size)
	file   int      // number of the log file where record size starts; 0 until positioned
	offset int64
}

// NewProver returns a Prover of the log in dir.
func NewProver(dir string) *Prover { return &Prover{dir: dir} }

var errEnough = errors.New("enough records")

// Consistency returns the RFC 6962 consistency proof from oldSize to newSize (newSize records must be in the
// log) and moves the Prover to newSize. Proving from a size other than the one it reached last reads the log from
// the start.
func (p *Prover) Consistency(oldSize, newSize uint64) ([][]byte, error) {
	if oldSize > newSize {
		return nil, fmt.Errorf("audit: no consistency proof from %d records down to %d", oldSize, newSize)
	}
	if p.file == 0 || p.size != oldSize {
		p.size, p.hashes, p.file, p.offset = 0, nil, 1, 0
		if err := p.advance(oldSize, nil); err != nil {
			p.file = 0
			return nil, err
		}
	}
	if oldSize == 0 || oldSize == newSize {
		if err := p.advance(newSize, nil); err != nil {
			p.file = 0
			return nil, err
		}
		return nil, nil
	}
	// The proof's nodes left of oldSize are nodes of its compact range; those right of it are built while the
	// records up to newSize are appended.
	nodes := map[compact.NodeID][]byte{}
	for i, id := range compact.RangeNodes(0, oldSize, nil) {
		nodes[id] = p.hashes[i]
	}
	err := p.advance(newSize, func(id compact.NodeID, h []byte) {
		if begin, _ := id.Coverage(); begin >= oldSize {
			nodes[id] = h
		}
	})
	if err != nil {
		p.file = 0
		return nil, err
	}
	pn, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	hashes := make([][]byte, len(pn.IDs))
	for i, id := range pn.IDs {
		h, ok := nodes[id]
		if !ok {
			return nil, fmt.Errorf("audit: consistency proof %d to %d: node %+v not computed", oldSize, newSize, id)
		}
		hashes[i] = h
	}
	if hashes, err = pn.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return hashes, nil
}

// advance appends the leaf hashes of the records from the current position until size n, reporting new nodes to
// visit.
func (p *Prover) advance(n uint64, visit compact.VisitFn) error {
	if p.size == n {
		return nil
	}
	r, err := rangeFactory.NewRange(0, p.size, p.hashes)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	nums, err := logFiles(p.dir)
	if err != nil {
		return err
	}
	for p.size < n {
		if p.file > len(nums) {
			return fmt.Errorf("audit: the log has %d records, fewer than %d", p.size, n)
		}
		_, err := scanFile(filepath.Join(p.dir, logFileName(p.file)), p.offset, 0, func(pos Position, line []byte) error {
			if p.size == n {
				return errEnough
			}
			if err := r.Append(LeafHash(line), visit); err != nil {
				return err
			}
			p.size++
			p.offset = pos.Offset + int64(len(line)) + 1
			return nil
		})
		if err != nil && !errors.Is(err, errEnough) {
			return err
		}
		if p.size < n {
			p.file, p.offset = p.file+1, 0
		}
	}
	p.hashes = r.Hashes()
	return nil
}
