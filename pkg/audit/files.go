package audit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Names inside a log directory.
const (
	filePrefix      = "audit-"
	fileSuffix      = ".jsonl"
	CheckpointsFile = "checkpoints" // signed checkpoints, one after another, each followed by a blank line
	stateFile       = "tree.state"  // the tree at the last checkpoint, so a restart does not rehash the whole log
	KeyCertFile     = "audit-key.jws"
)

func logFileName(n int) string { return fmt.Sprintf("%s%06d%s", filePrefix, n, fileSuffix) }

// logFiles lists the numbered log files in dir, in order. Numbers must run from 1 without a gap: a missing file
// is a deleted stretch of the log.
func logFiles(dir string) ([]int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var nums []int
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, filePrefix) || !strings.HasSuffix(name, fileSuffix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, filePrefix), fileSuffix))
		if err != nil || n < 1 || logFileName(n) != name {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	for i, n := range nums {
		if n != i+1 {
			return nil, fmt.Errorf("%w: log file %s is missing", ErrMalformed, logFileName(i+1))
		}
	}
	return nums, nil
}

// Position names a line of the log.
type Position struct {
	File   string `json:"file"`
	Line   int    `json:"line"`   // 1-based
	Offset int64  `json:"offset"` // of the line's first byte
}

func (p Position) String() string { return fmt.Sprintf("%s line %d", p.File, p.Line) }

// tornTail is returned by scanFile when the file ends in a partial line: what a crash mid-write leaves.
type tornTail struct {
	pos  Position
	size int
}

// scanFile calls fn for each complete line of file path from byte offset on (line numbering starts at
// firstLine). A final partial line is returned as a tornTail, not passed to fn.
func scanFile(path string, offset int64, firstLine int, fn func(pos Position, line []byte) error) (*tornTail, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	pos := Position{File: filepath.Base(path), Line: firstLine, Offset: offset}
	for {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				return &tornTail{pos: pos, size: len(line)}, nil
			}
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, pos, err)
		}
		if err := fn(pos, line); err != nil {
			return nil, err
		}
		pos.Offset += int64(len(line)) + 1
		pos.Line++
	}
}

var errLineTooLong = fmt.Errorf("line longer than %d bytes", MaxRecordBytes)

// readLine reads one line without its newline, refusing to buffer more than MaxRecordBytes. At the end of input
// it returns what is left (a partial line) with io.EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, err := r.ReadSlice('\n')
		out = append(out, chunk...)
		if len(out) > MaxRecordBytes+1 {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(out, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return out, err
		}
	}
}
