package audit

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriterAppendVerify(t *testing.T) {
	for _, d := range []Durability{Sync, Batched} {
		t.Run(string(d), func(t *testing.T) {
			dir := t.TempDir()
			s, v := newKey(t)
			w := openWriter(t, Options{Dir: dir, Signer: s, Durability: d})
			appendN(t, w, 300, 8)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(dir, v)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records != 300 || rep.Witnessed != 300 || rep.Checkpoints != 1 || rep.TornTail != nil {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestWriterCheckpointsPeriodically: checkpoints follow the log without Close, in Batched mode too, where they wait
// for the background fsync.
func TestWriterCheckpointsPeriodically(t *testing.T) {
	for _, d := range []Durability{Sync, Batched} {
		t.Run(string(d), func(t *testing.T) { checkpointsPeriodically(t, d) })
	}
}

func checkpointsPeriodically(t *testing.T, d Durability) {
	dir := t.TempDir()
	s, v := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s, CheckpointInterval: 5 * time.Millisecond, Durability: d})
	defer func() { _ = w.Close() }()
	for i := range 3 {
		appendN(t, w, 10, 2)
		want := (i + 1) * 10
		deadline := time.Now().Add(30 * time.Second)
		for {
			rep, err := Verify(dir, v)
			if err != nil && !errors.Is(err, ErrNoCheckpoint) { // the first checkpoint may not be written yet
				t.Fatal(err)
			}
			if err == nil && rep.Witnessed == uint64(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint at %d: %+v", want, rep)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func TestWriterRestartResumesTree(t *testing.T) {
	for _, dropState := range []bool{false, true} {
		t.Run(map[bool]string{false: "state", true: "no-state"}[dropState], func(t *testing.T) {
			dir := t.TempDir()
			s, v := newKey(t)
			w := openWriter(t, Options{Dir: dir, Signer: s, MaxFileBytes: 2048})
			appendN(t, w, 40, 4)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if dropState {
				if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
					t.Fatal(err)
				}
			}
			w = openWriter(t, Options{Dir: dir, Signer: s, MaxFileBytes: 2048})
			if w.Size() != 40 {
				t.Fatalf("resumed at %d, want 40", w.Size())
			}
			appendN(t, w, 25, 3)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(dir, v)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Records != 65 || rep.Witnessed != 65 || rep.Checkpoints != 2 || len(rep.Files) < 3 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestWriterRotationAndProve(t *testing.T) {
	for _, d := range []Durability{Sync, Batched} {
		t.Run(string(d), func(t *testing.T) { rotationAndProve(t, d) })
	}
}

func rotationAndProve(t *testing.T, d Durability) {
	dir := t.TempDir()
	s, v := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s, MaxFileBytes: 1500, Durability: d})
	appendN(t, w, 50, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(dir, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Files) < 5 {
		t.Fatalf("files %v: want several", rep.Files)
	}
	for _, idx := range []uint64{0, 1, 17, 48, 49} {
		p, err := Prove(dir, idx, nil, v)
		if err != nil {
			t.Fatalf("prove %d: %v", idx, err)
		}
		if err := VerifyInclusion(p, v); err != nil {
			t.Fatalf("verify proof %d: %v", idx, err)
		}
		// A proof of another record's line must fail.
		other := *p
		other.Record = string(bytes.Replace([]byte(p.Record), []byte(`"POST"`), []byte(`"GET"`), 1))
		if err := VerifyInclusion(&other, v); err == nil {
			t.Fatalf("a changed record verified against proof %d", idx)
		}
	}
	if _, err := Prove(dir, 50, nil, v); err == nil {
		t.Fatal("proved a record beyond the checkpoint")
	}
}

func TestWriterTornTailIsCutOnOpen(t *testing.T) {
	dir := t.TempDir()
	s, v := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s})
	appendN(t, w, 10, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, logFileName(1)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(`{"i":10,"prev":"abc`)
	_ = f.Close()
	rep, err := Verify(dir, v)
	if err != nil {
		t.Fatal(err)
	}
	if rep.TornTail == nil || rep.TornTail.Line != 11 || rep.Records != 10 {
		t.Fatalf("report %+v, want a torn tail at line 11", rep)
	}
	w = openWriter(t, Options{Dir: dir, Signer: s})
	appendN(t, w, 5, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err = Verify(dir, v); err != nil || rep.Records != 15 || rep.TornTail != nil {
		t.Fatalf("after reopen: %+v, %v", rep, err)
	}
}

func TestWriterRefusesALogChangedUnderIt(t *testing.T) {
	dir := t.TempDir()
	s, _ := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s})
	appendN(t, w, 10, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, logFileName(1))
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir, Signer: s}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("open of a truncated log: %v, want ErrMalformed", err)
	}
}

// A write error (what a full disk gives) fails the batch and every later Append: the caller must not go on as if
// audited.
func TestWriterWriteErrorIsSticky(t *testing.T) {
	dir := t.TempDir()
	s, v := newKey(t)
	w := openWriter(t, Options{Dir: dir, Signer: s})
	appendN(t, w, 3, 1)
	_ = w.f.Close() // the next write fails, as on a full disk
	ctx := context.Background()
	if _, err := w.Append(ctx, testRecord(3)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("append after a write error: %v, want ErrUnavailable", err)
	}
	if _, err := w.Append(ctx, testRecord(4)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second append after a write error: %v, want ErrUnavailable", err)
	}
	_ = w.Close()
	// What was acknowledged is intact and reopening resumes after it.
	w = openWriter(t, Options{Dir: dir, Signer: s})
	if w.Size() != 3 {
		t.Fatalf("resumed at %d, want 3", w.Size())
	}
	appendN(t, w, 2, 1)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(dir, v); err != nil || rep.Records != 5 {
		t.Fatalf("verify: %+v, %v", rep, err)
	}
}
