package audit

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// What a TamperError found.
const (
	TamperMalformed  = "malformed"  // a line that is not a record
	TamperEdited     = "edited"     // a record's content changed
	TamperInserted   = "inserted"   // a record that repeats an index already seen
	TamperDeleted    = "deleted"    // records missing from the sequence
	TamperReordered  = "reordered"  // a record out of its place
	TamperTruncated  = "truncated"  // records a checkpoint covers are gone from the end
	TamperCheckpoint = "checkpoint" // the log does not match a signed checkpoint (rewritten from some record on)
)

// TamperError names the first record at which a log fails verification.
type TamperError struct {
	Kind   string   `json:"kind"`
	Index  uint64   `json:"index"`    // the record's index (its expected index for a malformed line)
	Pos    Position `json:"position"` // where it is, or where the missing records should be
	Detail string   `json:"detail"`
}

func (e *TamperError) Error() string {
	return fmt.Sprintf("audit: record %d (%s): %s: %s", e.Index, e.Pos, e.Kind, e.Detail)
}

// Report is the outcome of a successful Verify.
type Report struct {
	Origin      string   `json:"origin"`
	Files       []string `json:"files"`
	Records     uint64   `json:"records"`
	Root        []byte   `json:"root"`
	Checkpoints int      `json:"checkpoints"`
	// Witnessed is the largest checkpoint size: records from there on are in the log but under no signed
	// checkpoint yet.
	Witnessed uint64 `json:"witnessed"`
	// TornTail is a partial last line (a write cut short by a crash, never acknowledged), ignored.
	TornTail *Position `json:"tornTail,omitempty"`
}

// entry is one parsed line.
type entry struct {
	rec  *Record
	line []byte
	hash []byte
	pos  Position
}

// loadLog reads every line of every log file in dir.
func loadLog(dir string) ([]entry, []string, *Position, error) {
	nums, err := logFiles(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	var (
		ents  []entry
		files []string
		torn  *Position
	)
	for i, n := range nums {
		name := logFileName(n)
		files = append(files, name)
		tt, err := scanFile(filepath.Join(dir, name), 0, 1, func(pos Position, line []byte) error {
			rec, err := ParseRecord(line)
			if err != nil {
				return &TamperError{Kind: TamperMalformed, Index: uint64(len(ents)), Pos: pos, Detail: err.Error()}
			}
			ents = append(ents, entry{rec: rec, line: slices.Clone(line), hash: LeafHash(line), pos: pos})
			return nil
		})
		if err != nil {
			var te *TamperError
			if !errors.As(err, &te) {
				err = &TamperError{Kind: TamperMalformed, Index: uint64(len(ents)), Pos: Position{File: name}, Detail: err.Error()}
			}
			return nil, nil, nil, err
		}
		if tt != nil {
			if i != len(nums)-1 {
				return nil, nil, nil, &TamperError{Kind: TamperMalformed, Index: uint64(len(ents)), Pos: tt.pos,
					Detail: "a partial line at the end of a file that is not the last"}
			}
			torn = &tt.pos
		}
	}
	return ents, files, torn, nil
}

type signedCheckpoint struct {
	Checkpoint
	note []byte
	line int
}

// loadCheckpoints reads and verifies every checkpoint in dir's checkpoints file.
func loadCheckpoints(dir string, v note.Verifier) ([]signedCheckpoint, error) {
	data, err := os.ReadFile(filepath.Join(dir, CheckpointsFile))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return parseCheckpoints(data, v)
}

func parseCheckpoints(data []byte, v note.Verifier) ([]signedCheckpoint, error) {
	notes, lines, err := SplitCheckpoints(data)
	if err != nil {
		return nil, err
	}
	var out []signedCheckpoint
	for i, n := range notes {
		c, err := OpenCheckpoint(n, v)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", CheckpointsFile, lines[i], err)
		}
		if len(out) > 0 && c.Size < out[len(out)-1].Size {
			return nil, fmt.Errorf("%w: %s line %d: checkpoint size %d after %d", ErrMalformed, CheckpointsFile, lines[i], c.Size, out[len(out)-1].Size)
		}
		out = append(out, signedCheckpoint{Checkpoint: c, note: n, line: lines[i]})
	}
	return out, nil
}

// ErrNoCheckpoint is returned by Verify for a log with records and no checkpoint to check them against.
var ErrNoCheckpoint = errors.New("audit: the log has records but no checkpoint")

// Verify checks the log in dir against its signed checkpoints (verified with v), and against the checkpoints files
// in witnessed (copies kept elsewhere, in the same format): every line is a record, indices
// run 0, 1, 2... without gap, repeat or swap, each record's prev is its predecessor's leaf hash, and the Merkle
// root at each checkpoint's size is the signed one. The error for a log that fails is a *TamperError naming the
// first bad record; for a checkpoint that fails, an error naming its line.
func Verify(dir string, v note.Verifier, witnessed ...[]byte) (*Report, error) {
	cps, err := loadCheckpoints(dir, v)
	if err != nil {
		return nil, err
	}
	for i, w := range witnessed {
		more, err := parseCheckpoints(w, v)
		if err != nil {
			return nil, fmt.Errorf("witnessed checkpoints %d: %w", i+1, err)
		}
		cps = append(cps, more...)
	}
	slices.SortStableFunc(cps, func(a, b signedCheckpoint) int { return cmp.Compare(a.Size, b.Size) })
	ents, files, torn, err := loadLog(dir)
	if err != nil {
		return nil, err
	}
	if err := checkSequence(ents); err != nil {
		return nil, err
	}
	if len(ents) > 0 && len(cps) == 0 {
		return nil, ErrNoCheckpoint
	}
	rep := &Report{Origin: v.Name(), Files: files, Records: uint64(len(ents)), Checkpoints: len(cps), TornTail: torn}
	tree := rangeFactory.NewEmptyRange(0)
	ci := 0
	for i := 0; i <= len(ents); i++ {
		for ci < len(cps) && cps[ci].Size == uint64(i) {
			root, err := rootOf(tree)
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(root, cps[ci].Root) {
				return nil, mismatch(ents, cps[ci])
			}
			rep.Witnessed = cps[ci].Size
			ci++
		}
		if i == len(ents) {
			break
		}
		if err := tree.Append(ents[i].hash, nil); err != nil {
			return nil, err
		}
	}
	if ci < len(cps) {
		c := cps[len(cps)-1]
		te := &TamperError{Kind: TamperTruncated, Index: uint64(len(ents)),
			Detail: fmt.Sprintf("the log ends after %d records; the checkpoint at %s line %d covers %d", len(ents), CheckpointsFile, c.line, c.Size)}
		if len(ents) > 0 {
			last := ents[len(ents)-1].pos
			te.Pos = Position{File: last.File, Line: last.Line + 1}
		} else if len(files) > 0 {
			te.Pos = Position{File: files[0], Line: 1}
		}
		return nil, te
	}
	if rep.Root, err = rootOf(tree); err != nil {
		return nil, err
	}
	return rep, nil
}

func rootOf(r *compact.Range) ([]byte, error) {
	if r.End() == 0 {
		return emptyRoot(), nil
	}
	return r.GetRootHash(nil)
}

func emptyRoot() []byte { return slices.Clone(hasherEmptyRoot) }

// mismatch explains a root that differs from a checkpoint although indices and the prev chain hold: the records
// were rewritten consistently from some point on, or the last record before the checkpoint was edited (no later
// record's prev covers it). Either way the run ends at record Size-1.
func mismatch(ents []entry, c signedCheckpoint) error {
	e := ents[c.Size-1]
	return &TamperError{Kind: TamperCheckpoint, Index: c.Size - 1, Pos: e.pos,
		Detail: fmt.Sprintf("the tree of %d records does not have the root signed at %s line %d: this record was edited, or the records before it were rewritten", c.Size, CheckpointsFile, c.line)}
}

// checkSequence checks indices and the prev chain, naming the first record out of place.
func checkSequence(ents []entry) error {
	for p := range ents {
		e := ents[p]
		want := uint64(p)
		if e.rec.Index == want {
			continue
		}
		if e.rec.Index < want {
			return &TamperError{Kind: TamperInserted, Index: e.rec.Index, Pos: e.pos,
				Detail: fmt.Sprintf("a second record %d where record %d belongs", e.rec.Index, want)}
		}
		for q := p + 1; q < len(ents); q++ {
			if ents[q].rec.Index == want {
				return &TamperError{Kind: TamperReordered, Index: want, Pos: ents[q].pos,
					Detail: fmt.Sprintf("found after record %d; %s holds record %d", ents[q-1].rec.Index, e.pos, e.rec.Index)}
			}
		}
		return &TamperError{Kind: TamperDeleted, Index: want, Pos: e.pos,
			Detail: fmt.Sprintf("records %d to %d are missing before record %d", want, e.rec.Index-1, e.rec.Index)}
	}
	chained := func(p int) bool {
		if p == 0 {
			return ents[0].rec.Prev == ""
		}
		return ents[p].rec.Prev == base64.StdEncoding.EncodeToString(ents[p-1].hash)
	}
	for p := range ents {
		if chained(p) {
			continue
		}
		// Record p's prev does not match record p-1. If p's own hash also fails its successor, p itself changed
		// (its prev field); otherwise p-1's content changed.
		bad := p - 1
		if p == 0 || (p+1 < len(ents) && !chained(p+1)) {
			bad = p
		}
		return &TamperError{Kind: TamperEdited, Index: uint64(bad), Pos: ents[bad].pos,
			Detail: fmt.Sprintf("its leaf hash is not the prev of record %d", p)}
	}
	return nil
}
