package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func FuzzParseRecord(f *testing.F) {
	line, _ := testRecord(1).encode()
	f.Add(line)
	f.Add([]byte(`{"i":3,"prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","time":"2026-01-01T00:00:00Z","kind":"decision"}`))
	f.Add([]byte(`{"i":-1}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		// What parses encodes again and parses to the same index.
		out, err := r.encode()
		if err != nil {
			return
		}
		r2, err := ParseRecord(out)
		if err != nil || r2.Index != r.Index {
			t.Fatalf("re-encoded record: %v", err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
	f.Add("o\n0\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\next\n")
	f.Add("o\n01\n\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := ParseCheckpoint(text)
		if err != nil {
			return
		}
		if len(c.Extensions) == 0 && c.Text() != text {
			t.Fatalf("round trip: %q became %q", text, c.Text())
		}
	})
}

// FuzzCheckpointsFile feeds hostile checkpoints files (and signed notes) to the splitter and the verifier.
func FuzzCheckpointsFile(f *testing.F) {
	s, v := newKey(f)
	msg, _ := SignCheckpoint(Checkpoint{Origin: testOrigin, Size: 3, Root: make([]byte, 32)}, s)
	f.Add(append(msg, '\n'))
	f.Add(append(append(append(msg, '\n'), msg...), '\n'))
	f.Add([]byte("a\n\n— b c\n\n"))
	f.Add([]byte("\n\n\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseCheckpoints(data, v)
		_, _ = OpenCheckpoint(data, v)
	})
}

func FuzzInclusionProof(f *testing.F) {
	dir := f.TempDir()
	s, v := newKey(f)
	w, err := Open(Options{Dir: dir, Signer: s, CheckpointInterval: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	appendN(f, w, 5, 1)
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	p, err := Prove(dir, 2, nil, v)
	if err != nil {
		f.Fatal(err)
	}
	b, _ := json.Marshal(p)
	f.Add(b)
	f.Add([]byte(`{"index":1,"treeSize":0,"hashes":[]}`))
	f.Add([]byte(`{"index":18446744073709551615,"treeSize":18446744073709551615,"hashes":["AA=="]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseInclusionProof(b)
		if err != nil {
			return
		}
		_ = VerifyInclusion(p, v)
	})
}

// FuzzLogFile: a hostile log file never crashes the verifier, and what it reports names a position.
func FuzzLogFile(f *testing.F) {
	line, _ := testRecord(0).encode()
	f.Add(append(line, '\n'))
	f.Add([]byte("{\n}\n\x00\x00"))
	_, v := newKey(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, logFileName(1)), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, CheckpointsFile), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _ = Verify(dir, v)
	})
}

// FuzzRecordEncoding checks that the writer's hand-written encoding is byte for byte json.Marshal's, whatever the
// strings hold (escapes, HTML characters, invalid UTF-8, U+2028), so a record's line stays what any JSON tool
// would write for it.
func FuzzRecordEncoding(f *testing.F) {
	f.Add(uint64(7), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", int64(1764000000123456789), "/mcp", "tools/call", "p1", 200)
	f.Add(uint64(0), "", int64(0), "<a&b>\"\\\n\t\x00\x7f", "caf\xc3\xa9 \xe2\x80\xa8", "", 0)
	f.Add(uint64(1<<63), "x", int64(-62135596800), "\xff\xfe", "\u2029", "a,b", -1)
	f.Add(uint64(2), "", int64(253402300800000000), "a&b", "x>y", "q\"", 1)
	f.Fuzz(func(t *testing.T, index uint64, prev string, nanos int64, path, tool, policy string, status int) {
		r := testRecord(1)
		r.Index, r.Prev, r.Time = index, prev, time.Unix(0, nanos).UTC()
		r.Path, r.MCPTool, r.Status, r.Actor = path, tool, status, tool+path
		if policy != "" {
			r.PolicyIDs = []string{policy, path}
		}
		want, wantErr := json.Marshal(r)
		got, err := r.encode()
		// encode also refuses a record over MaxRecordBytes, which json.Marshal writes.
		if (err != nil) != (wantErr != nil || len(want) > MaxRecordBytes) {
			t.Fatalf("encode: %v, json.Marshal: %v (%d bytes)", err, wantErr, len(want))
		}
		if err == nil && string(got) != string(want) {
			t.Fatalf("encode:\n%s\njson.Marshal:\n%s", got, want)
		}
	})
}
