package audit

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "example.org/agent/planner"

func newKey(t testing.TB) (note.Signer, note.Verifier) {
	t.Helper()
	s, v, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "audit.key"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func openWriter(t testing.TB, opts Options) *Writer {
	t.Helper()
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = time.Hour // tests checkpoint on Close unless they ask for more
	}
	w, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func testRecord(n int) *Record {
	return &Record{
		Time: time.Date(2026, 5, 1, 12, 0, 0, n, time.UTC), Kind: KindDecision, Direction: "ingress",
		Agent: "spiffe://example.org/agent/planner", Subject: "alice@example.org", SubjectKind: "user",
		Host: "weather.tools.local", Method: "POST", Path: fmt.Sprintf("/forecast/%d", n),
		MCPMethod: "tools/call", MCPTool: "forecast", Decision: Allow, PolicyIDs: []string{"p1"},
		Txn: "txn-1", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", AuthMethod: "wpt",
	}
}

// appendN appends n records from workers goroutines and fails the test on any error.
func appendN(t testing.TB, w *Writer, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	per := n / workers
	for g := range workers {
		cnt := per
		if g == workers-1 {
			cnt = n - per*(workers-1)
		}
		wg.Go(func() {
			for i := range cnt {
				if _, err := w.Append(context.Background(), testRecord(g*per+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

var _ = rand.Reader
