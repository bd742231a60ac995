package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

const (
	crashEnv           = "AGENTAUTH_AUDIT_CRASH_DIR"
	crashDurabilityEnv = "AGENTAUTH_AUDIT_CRASH_DURABILITY"
)

// TestCrashChild is the writer that TestKillDuringWrites kills: it appends from several goroutines and prints
// "bench: ack N" once record N is durable. It runs only as that child.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as TestKillDuringWrites's child process")
	}
	s, _, err := LoadOrCreateKey(filepath.Join(dir, "audit.key"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(Options{Dir: filepath.Join(dir, "log"), Signer: s, MaxFileBytes: 32 << 10, CheckpointInterval: 20 * time.Millisecond,
		Durability: Durability(os.Getenv(crashDurabilityEnv))})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("bench: pid %d\n", os.Getpid())
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				idx, err := w.Append(context.Background(), testRecord(g*1_000_000+i))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return
				}
				mu.Lock()
				fmt.Printf("bench: ack %d\n", idx)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestKillDuringWrites kills a writer with SIGKILL during sustained appends, in both durability modes; the log then
// verifies, holds every record whose Append had returned, and a new writer resumes it. (Batched acknowledges a
// record once it is written, before its fsync: a process crash must still lose none.)
func TestKillDuringWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, d := range []Durability{Sync, Batched} {
		t.Run(string(d), func(t *testing.T) {
			t.Setenv(crashDurabilityEnv, string(d))
			killDuringWrites(t)
		})
	}
}

func killDuringWrites(t *testing.T) {
	dir := t.TempDir()
	_, v, err := LoadOrCreateKey(filepath.Join(dir, "audit.key"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	c := testproc.StartChild(t, "TestCrashChild", crashEnv, dir, 60*time.Second)
	pid, err := strconv.Atoi(c.Read("pid")[0])
	if err != nil {
		t.Fatal(err)
	}
	var maxAck uint64
	for range 1500 {
		n, err := strconv.ParseUint(c.Read("ack")[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		maxAck = max(maxAck, n)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "log")
	// Wait for the process to be gone before reading its files.
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := Verify(logDir, v)
	if err != nil {
		t.Fatalf("verify after kill -9: %v", err)
	}
	if rep.Records <= maxAck {
		t.Fatalf("log has %d records; record %d was acknowledged", rep.Records, maxAck)
	}
	t.Logf("killed after %d acks seen (max index %d): %d records in %d files, %d witnessed, torn tail %v",
		1500, maxAck, rep.Records, len(rep.Files), rep.Witnessed, rep.TornTail)
	s, _, err := LoadOrCreateKey(filepath.Join(dir, "audit.key"), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	w := openWriter(t, Options{Dir: logDir, Signer: s, MaxFileBytes: 32 << 10})
	appendN(t, w, 10, 2)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if rep2, err := Verify(logDir, v); err != nil || rep2.Records != rep.Records+10 || rep2.TornTail != nil {
		t.Fatalf("after restart: %+v, %v", rep2, err)
	}
}
