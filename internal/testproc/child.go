package testproc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Child is this test binary run again as a helper process (a controller under benchmark, say), so its CPU and
// memory can be measured apart from the test's. It runs only test testName, finds its work in the environment
// variable env, reads commands on stdin and answers each with one stdout line "bench: KIND FIELDS...". Closing
// its stdin stops it.
type Child struct {
	tb      testing.TB
	in      io.WriteCloser
	lines   chan string
	timeout time.Duration
}

// StartChild starts the child with env=value; Read waits up to timeout for each answer. It stops with the test.
func StartChild(tb testing.TB, testName, env, value string, timeout time.Duration) *Child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+testName+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+value)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &Child{tb: tb, in: in, lines: make(chan string, 16), timeout: timeout}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "bench: "); ok {
				c.lines <- line
			}
		}
		close(c.lines)
	}()
	tb.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Wait()
	})
	return c
}

// Send writes one command line to the child.
func (c *Child) Send(args ...any) { fmt.Fprintln(c.in, args...) }

// Read waits for the child's next answer, which must be of kind, and returns its fields after the kind.
func (c *Child) Read(kind string) []string {
	c.tb.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.tb.Fatal("child process exited")
		}
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != kind {
			c.tb.Fatalf("child process: got %q, want %s", line, kind)
		}
		return f[1:]
	case <-time.After(c.timeout):
		c.tb.Fatalf("child process: no %s within %v", kind, c.timeout)
	}
	return nil
}
