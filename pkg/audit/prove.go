package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// InclusionProof shows that a record is in the log a signed checkpoint commits to. An auditor who trusts only the
// checkpoint's key checks it with VerifyInclusion: no access to the log is needed.
type InclusionProof struct {
	Index      uint64   `json:"index"`
	TreeSize   uint64   `json:"treeSize"`
	Record     string   `json:"record"`     // the record's line, as hashed
	Hashes     [][]byte `json:"hashes"`     // RFC 6962 inclusion proof, leaf to root
	Checkpoint string   `json:"checkpoint"` // the signed checkpoint
}

// Prove builds the inclusion proof of record index in the log in dir, against checkpoint (a signed note verified
// with v; nil means the last checkpoint in dir). The log must match the checkpoint.
func Prove(dir string, index uint64, checkpoint []byte, v note.Verifier) (*InclusionProof, error) {
	var c signedCheckpoint
	if checkpoint == nil {
		cps, err := loadCheckpoints(dir, v)
		if err != nil {
			return nil, err
		}
		if len(cps) == 0 {
			return nil, fmt.Errorf("audit: %s holds no checkpoint", dir)
		}
		c = cps[len(cps)-1]
	} else {
		cp, err := OpenCheckpoint(checkpoint, v)
		if err != nil {
			return nil, err
		}
		c = signedCheckpoint{Checkpoint: cp, note: checkpoint}
	}
	if index >= c.Size {
		return nil, fmt.Errorf("audit: record %d is not under the checkpoint, which covers %d records", index, c.Size)
	}
	ents, _, _, err := loadLog(dir)
	if err != nil {
		return nil, err
	}
	if uint64(len(ents)) < c.Size {
		return nil, fmt.Errorf("audit: the log has %d records, the checkpoint covers %d", len(ents), c.Size)
	}
	ents = ents[:c.Size]
	if err := checkSequence(ents); err != nil {
		return nil, err
	}
	leaves := make([][]byte, len(ents))
	for i, e := range ents {
		leaves[i] = e.hash
	}
	hashes, err := inclusionHashes(leaves, index)
	if err != nil {
		return nil, err
	}
	p := &InclusionProof{Index: index, TreeSize: c.Size, Record: string(ents[index].line), Hashes: hashes, Checkpoint: string(c.note)}
	// The proof must hold against the checkpoint: if it does not, the log does not match what was signed.
	if err := VerifyInclusion(p, v); err != nil {
		return nil, err
	}
	return p, nil
}

// ParseInclusionProof parses a proof as Prove's JSON encoding writes it.
func ParseInclusionProof(b []byte) (*InclusionProof, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p InclusionProof
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: proof: %w", ErrMalformed, err)
	}
	if len(p.Hashes) > 64 {
		return nil, fmt.Errorf("%w: proof: %d hashes", ErrMalformed, len(p.Hashes))
	}
	return &p, nil
}

// VerifyInclusion checks a proof against its checkpoint, verified with v: the checkpoint is signed, covers the
// proof's tree size, and the record's leaf hash with the proof hashes gives the signed root.
func VerifyInclusion(p *InclusionProof, v note.Verifier) error {
	c, err := OpenCheckpoint([]byte(p.Checkpoint), v)
	if err != nil {
		return err
	}
	if c.Size != p.TreeSize {
		return fmt.Errorf("audit: proof for tree size %d, checkpoint of size %d", p.TreeSize, c.Size)
	}
	if p.Index >= p.TreeSize {
		return fmt.Errorf("audit: proof index %d outside a tree of %d", p.Index, p.TreeSize)
	}
	rec, err := ParseRecord([]byte(p.Record))
	if err != nil {
		return err
	}
	if rec.Index != p.Index {
		return fmt.Errorf("audit: the proof is for index %d, the record says %d", p.Index, rec.Index)
	}
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, p.Index, p.TreeSize, LeafHash([]byte(p.Record)), p.Hashes, c.Root); err != nil {
		return fmt.Errorf("audit: record %d is not in the log at checkpoint size %d: %w", p.Index, c.Size, err)
	}
	return nil
}

// inclusionHashes computes the RFC 6962 inclusion proof of leaf index in the tree of the given leaf hashes.
func inclusionHashes(leaves [][]byte, index uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, uint64(len(leaves)))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return nodeHashes(nodes, leaves)
}

// nodeHashes computes the hashes of a proof's nodes from the leaf hashes.
func nodeHashes(nodes proof.Nodes, leaves [][]byte) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		// Each node is a perfect subtree: its compact range is the one hash.
		begin, end := id.Coverage()
		if end > uint64(len(leaves)) {
			return nil, fmt.Errorf("audit: proof node [%d, %d) beyond the %d leaves", begin, end, len(leaves))
		}
		r := rangeFactory.NewEmptyRange(begin)
		for _, h := range leaves[begin:end] {
			if err := r.Append(h, nil); err != nil {
				return nil, fmt.Errorf("audit: %w", err)
			}
		}
		hashes[i] = r.Hashes()[0]
	}
	hashes, err := nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return hashes, nil
}

// ConsistencyProof computes the RFC 6962 consistency proof between the log in dir at oldSize and at newSize
// records, from the records themselves: what a witness that holds the checkpoint at oldSize needs to accept the
// one at newSize. It reads the log up to newSize.
func ConsistencyProof(dir string, oldSize, newSize uint64) ([][]byte, error) {
	if oldSize > newSize {
		return nil, fmt.Errorf("audit: no consistency proof from %d records down to %d", oldSize, newSize)
	}
	if oldSize == 0 || oldSize == newSize {
		return nil, nil
	}
	ents, _, _, err := loadLog(dir)
	if err != nil {
		return nil, err
	}
	if uint64(len(ents)) < newSize {
		return nil, fmt.Errorf("audit: the log has %d records, fewer than %d", len(ents), newSize)
	}
	leaves := make([][]byte, newSize)
	for i := range leaves {
		leaves[i] = ents[i].hash
	}
	nodes, err := proof.Consistency(oldSize, newSize)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return nodeHashes(nodes, leaves)
}

// LatestCheckpoint returns the last signed checkpoint in dir's checkpoints file (nil when there is none yet),
// unverified: whoever receives it verifies it.
func LatestCheckpoint(dir string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(dir, CheckpointsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	notes, _, err := SplitCheckpoints(data)
	if err != nil || len(notes) == 0 {
		return nil, err
	}
	return notes[len(notes)-1], nil
}
