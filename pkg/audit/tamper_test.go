package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// tamperLog writes a log of 20 records in two files (10 each, checkpointed at 10 and at 20) and returns its dir
// and the lines of each file.
func tamperLog(t *testing.T) (string, [][][]byte, func(dir string) error) {
	t.Helper()
	dir := t.TempDir()
	s, v := newKey(t)
	for range 2 {
		w := openWriter(t, Options{Dir: dir, Signer: s, MaxFileBytes: 1})
		appendN(t, w, 10, 1)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// MaxFileBytes 1 rotates after every batch: put the 20 records back into two files of 10 for readable cases.
	var all [][]byte
	nums, _ := logFiles(dir)
	for _, n := range nums {
		b, _ := os.ReadFile(filepath.Join(dir, logFileName(n)))
		all = append(all, bytes.SplitAfter(b, []byte("\n"))...)
		_ = os.Remove(filepath.Join(dir, logFileName(n)))
	}
	all = slices.DeleteFunc(all, func(l []byte) bool { return len(l) == 0 })
	if len(all) != 20 {
		t.Fatalf("%d lines", len(all))
	}
	files := [][][]byte{all[:10], all[10:]}
	writeFiles(t, dir, files)
	if _, err := Verify(dir, v); err != nil {
		t.Fatalf("untouched log: %v", err)
	}
	return dir, files, func(dir string) error { _, err := Verify(dir, v); return err }
}

func writeFiles(t *testing.T, dir string, files [][][]byte) {
	t.Helper()
	nums, _ := logFiles(dir)
	for _, n := range nums {
		_ = os.Remove(filepath.Join(dir, logFileName(n)))
	}
	for i, lines := range files {
		if err := os.WriteFile(filepath.Join(dir, logFileName(i+1)), bytes.Join(lines, nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyNamesTamperedRecord(t *testing.T) {
	edit := func(l []byte) []byte { return bytes.Replace(l, []byte(`"allow"`), []byte(`"deny"`), 1) }
	cases := []struct {
		name   string
		mutate func(f [][][]byte) [][][]byte
		kind   string
		index  uint64
		file   string
		line   int
	}{
		{"edit", func(f [][][]byte) [][][]byte { f[0][6] = edit(f[0][6]); return f }, TamperEdited, 6, "audit-000001.jsonl", 7},
		{"edit in second file", func(f [][][]byte) [][][]byte { f[1][2] = edit(f[1][2]); return f }, TamperEdited, 12, "audit-000002.jsonl", 3},
		{"edit prev", func(f [][][]byte) [][][]byte {
			i := bytes.Index(f[0][4], []byte(`"prev":"`)) + len(`"prev":"`)
			f[0][4] = slices.Clone(f[0][4])
			f[0][4][i] = map[bool]byte{true: 'B', false: 'A'}[f[0][4][i] == 'A'] // another valid base64 letter
			return f
		}, TamperEdited, 4, "audit-000001.jsonl", 5},
		{"edit first record", func(f [][][]byte) [][][]byte { f[0][0] = edit(f[0][0]); return f }, TamperEdited, 0, "audit-000001.jsonl", 1},
		{"edit last record", func(f [][][]byte) [][][]byte { f[1][9] = edit(f[1][9]); return f }, TamperCheckpoint, 19, "audit-000002.jsonl", 10},
		{"edit last record of first checkpoint", func(f [][][]byte) [][][]byte { f[0][9] = edit(f[0][9]); return f }, TamperEdited, 9, "audit-000001.jsonl", 10},
		{"insert copy", func(f [][][]byte) [][][]byte { f[0] = slices.Insert(f[0], 4, f[0][3]); return f }, TamperInserted, 3, "audit-000001.jsonl", 5},
		{"insert forged", func(f [][][]byte) [][][]byte {
			f[0] = slices.Insert(f[0], 4, edit(f[0][4]))
			return f
		}, TamperInserted, 4, "audit-000001.jsonl", 6},
		{"delete", func(f [][][]byte) [][][]byte { f[0] = slices.Delete(f[0], 7, 8); return f }, TamperDeleted, 7, "audit-000001.jsonl", 8},
		{"delete across files", func(f [][][]byte) [][][]byte { f[0] = f[0][:9]; return f }, TamperDeleted, 9, "audit-000002.jsonl", 1},
		{"reorder", func(f [][][]byte) [][][]byte { f[0][2], f[0][3] = f[0][3], f[0][2]; return f }, TamperReordered, 2, "audit-000001.jsonl", 4},
		{"truncate", func(f [][][]byte) [][][]byte { f[1] = f[1][:7]; return f }, TamperTruncated, 17, "audit-000002.jsonl", 8},
		{"truncate whole file", func(f [][][]byte) [][][]byte { return f[:1] }, TamperTruncated, 10, "audit-000001.jsonl", 11},
		{"garbage line", func(f [][][]byte) [][][]byte { f[1][5] = []byte("{not json\n"); return f }, TamperMalformed, 15, "audit-000002.jsonl", 6},
		{"partial line mid-log", func(f [][][]byte) [][][]byte { f[0][9] = f[0][9][:20]; return f }, TamperMalformed, 9, "audit-000001.jsonl", 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, files, verify := tamperLog(t)
			writeFiles(t, dir, tc.mutate(files))
			err := verify(dir)
			var te *TamperError
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a TamperError", err)
			}
			if te.Kind != tc.kind || te.Index != tc.index || te.Pos.File != tc.file || te.Pos.Line != tc.line {
				t.Fatalf("got %q %d at %s, want %q %d at %s line %d (%v)", te.Kind, te.Index, te.Pos, tc.kind, tc.index, tc.file, tc.line, err)
			}
		})
	}
}

func TestVerifyRejectsForeignOrBrokenCheckpoints(t *testing.T) {
	dir, _, _ := tamperLog(t)
	_, other := newKey(t)
	if _, err := Verify(dir, other); !errors.Is(err, ErrCheckpointSignature) {
		t.Fatalf("another key: %v, want ErrCheckpointSignature", err)
	}
	_, v := newKey(t)
	path := filepath.Join(dir, CheckpointsFile)
	b, _ := os.ReadFile(path)
	for name, mut := range map[string][]byte{
		"cut":     b[:len(b)-5],
		"size":    bytes.Replace(b, []byte("\n10\n"), []byte("\n11\n"), 1),
		"no-sigs": append(slices.Clone(b), []byte("x\n1\nAAAA\n\n")...),
		"removed": nil,
	} {
		if err := os.WriteFile(path, mut, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(dir, v); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}
