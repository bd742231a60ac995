package audit

import (
	"bytes"
	"encoding/json"
	"fmt"

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
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		// Each node is a perfect subtree: its compact range is the one hash.
		begin, end := id.Coverage()
		r := rangeFactory.NewEmptyRange(begin)
		for _, h := range leaves[begin:end] {
			if err := r.Append(h, nil); err != nil {
				return nil, fmt.Errorf("audit: %w", err)
			}
		}
		hashes[i] = r.Hashes()[0]
	}
	if hashes, err = nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return hashes, nil
}
