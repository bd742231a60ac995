package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a tree head in the C2SP tlog-checkpoint format: the note text is the origin, the tree size in
// decimal and the base64 RFC 6962 root hash, one per line. We write no extension lines, and accept them on parse
// only as the spec allows (non-empty, opaque).
type Checkpoint struct {
	Origin     string
	Size       uint64
	Root       []byte
	Extensions []string
}

// maxCheckpointBytes bounds a signed checkpoint; ours are a few hundred bytes.
const maxCheckpointBytes = 16 << 10

// Text is the checkpoint's note text.
func (c Checkpoint) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
	for _, e := range c.Extensions {
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseCheckpoint parses a checkpoint's note text (already verified: see OpenCheckpoint).
func ParseCheckpoint(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: text does not end in a newline", ErrMalformed)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: %d lines, want at least 3", ErrMalformed, len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("%w: checkpoint: line %d is empty", ErrMalformed, i+1)
		}
	}
	c := Checkpoint{Origin: lines[0], Extensions: lines[3:]}
	if strings.ContainsAny(c.Origin, "+ \t") {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: origin %q has a space or plus", ErrMalformed, c.Origin)
	}
	// The spec wants decimal with no leading zeroes (except "0"); ParseUint would take "+1" or "007".
	s := lines[1]
	if s != "0" && (s[0] < '1' || s[0] > '9') {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: tree size %q", ErrMalformed, s)
	}
	size, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: tree size %q", ErrMalformed, s)
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint: root hash %q is not a base64 SHA-256 hash", ErrMalformed, lines[2])
	}
	c.Root = root
	return c, nil
}

// SignCheckpoint returns the checkpoint as a signed note.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: c.Text()}, s)
	if err != nil {
		return nil, fmt.Errorf("audit: signing checkpoint: %w", err)
	}
	return msg, nil
}

// ErrCheckpointSignature is wrapped when a checkpoint carries no valid signature by the expected key.
var ErrCheckpointSignature = errors.New("audit: checkpoint not signed by the expected key")

// OpenCheckpoint verifies a signed checkpoint with v and parses it. The origin must be the key's name, as the
// tlog-checkpoint spec recommends and as our writer signs.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	if len(msg) > maxCheckpointBytes {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint of %d bytes, over %d", ErrMalformed, len(msg), maxCheckpointBytes)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return Checkpoint{}, fmt.Errorf("%w (%s): %w", ErrCheckpointSignature, v.Name(), err)
		}
		return Checkpoint{}, fmt.Errorf("%w: checkpoint note: %w", ErrMalformed, err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint origin %q is not the key's name %q", ErrCheckpointSignature, c.Origin, v.Name())
	}
	return c, nil
}

// SplitCheckpoints splits a checkpoints file into its signed notes. The file holds notes one after another, each
// followed by a blank line; a checkpoint's text has no empty line, so blocks separated by blank lines alternate
// text, signatures, text, signatures. The returned offsets are each note's first line number (1-based).
func SplitCheckpoints(data []byte) (notes [][]byte, lines []int, err error) {
	if len(data) == 0 {
		return nil, nil, nil
	}
	if !bytes.HasSuffix(data, []byte("\n\n")) {
		return nil, nil, fmt.Errorf("%w: checkpoints file: does not end with a blank line (cut short?)", ErrMalformed)
	}
	blocks := bytes.Split(bytes.TrimSuffix(data, []byte("\n\n")), []byte("\n\n"))
	line := 1
	for i := 0; i < len(blocks); i += 2 {
		if i+1 == len(blocks) {
			return nil, nil, fmt.Errorf("%w: checkpoints file line %d: a checkpoint without signatures", ErrMalformed, line)
		}
		text, sigs := blocks[i], blocks[i+1]
		if len(text) == 0 || len(sigs) == 0 || !bytes.HasPrefix(sigs, []byte("— ")) {
			return nil, nil, fmt.Errorf("%w: checkpoints file line %d: not a signed checkpoint", ErrMalformed, line)
		}
		n := make([]byte, 0, len(text)+len(sigs)+3)
		n = append(append(append(append(n, text...), "\n\n"...), sigs...), '\n')
		notes = append(notes, n)
		lines = append(lines, line)
		line += bytes.Count(text, []byte("\n")) + bytes.Count(sigs, []byte("\n")) + 4
	}
	return notes, lines, nil
}
