package testproc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultGrace is how long Stop waits after SIGTERM before it kills the process, unless Grace says otherwise.
const DefaultGrace = 10 * time.Second

// readyTimeout bounds WaitFor and WaitHTTP: generous, so only a process that never becomes ready fails.
const readyTimeout = 30 * time.Second

// ModuleRoot returns the directory of the go.mod governing the working directory (a test's package directory).
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("testproc: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("testproc: the working directory is not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// Build runs `CGO_ENABLED=0 go build -o DIR/ pkgs...` in root, DIR being a new temporary directory, and returns
// DIR and a function that removes it. On failure nothing is left behind and the error holds go build's output.
func Build(root string, pkgs ...string) (dir string, cleanup func(), err error) {
	if len(pkgs) == 0 {
		return "", nil, errors.New("testproc: Build needs at least one package")
	}
	dir, err = os.MkdirTemp("", "agentauth-testbin-")
	if err != nil {
		return "", nil, fmt.Errorf("testproc: %w", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	cmd := exec.Command("go", append([]string{"build", "-o", dir + string(os.PathSeparator)}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("testproc: building %s: %w\n%s", strings.Join(pkgs, " "), err, out)
	}
	return dir, cleanup, nil
}

// Main is the body of a suite's TestMain: it builds pkgs (paths relative to the module root, e.g. "./cmd/sidecar")
// once, sets *binDir to the directory holding them, runs the tests and removes the directory. It returns the exit
// code for os.Exit.
func Main(m *testing.M, binDir *string, pkgs ...string) int {
	root, err := ModuleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, cleanup, err := Build(root, pkgs...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*binDir = dir
	return m.Run()
}

// Ports handed out by FreeAddr come from below Linux's ephemeral range (32768–60999 by default), so that no
// outgoing connection of this or a parallel test process can take one between FreeAddr and the binary's bind.
// The allocator is process-wide on purpose: its job is that one process never hands out a port twice.
const (
	portLow  = 20000
	portHigh = 32768
)

var ports = struct {
	sync.Mutex
	next int
}{next: portLow + rand.IntN(portHigh-portLow)}

// FreeAddr returns a 127.0.0.1 address that was free a moment ago and that this process has not handed out before.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	for range portHigh - portLow {
		port := ports.next
		ports.next++
		if ports.next >= portHigh {
			ports.next = portLow
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	t.Fatalf("no free port in %d-%d on 127.0.0.1", portLow, portHigh)
	return ""
}

// Option adjusts how Start runs a binary.
type Option func(*config)

type config struct {
	name   string
	args   []string
	env    []string
	prefix []string
	attr   *syscall.SysProcAttr
	grace  time.Duration
}

// Args are the binary's command-line arguments.
func Args(args ...string) Option { return func(c *config) { c.args = append(c.args, args...) } }

// Env adds KEY=value pairs to the environment the binary inherits from the test.
func Env(kv ...string) Option { return func(c *config) { c.env = append(c.env, kv...) } }

// Prefix runs the binary through a wrapper command, argv[0] argv[1:]... BIN ARGS..., such as
// `ip netns exec NS` or `taskset -c N`. The wrapper should exec the binary in place, so that Stop's signal and
// Pid reach the binary itself.
func Prefix(argv ...string) Option { return func(c *config) { c.prefix = append(c.prefix, argv...) } }

// Name is what log lines and failure messages call the process; the default is the binary's file name.
func Name(name string) Option { return func(c *config) { c.name = name } }

// Grace is how long Stop waits after SIGTERM before it kills the process (DefaultGrace if not set).
func Grace(d time.Duration) Option { return func(c *config) { c.grace = d } }

// SysProcAttr sets OS-specific attributes of the process, e.g. Pdeathsig on Linux.
func SysProcAttr(a *syscall.SysProcAttr) Option { return func(c *config) { c.attr = a } }

// Proc is a started process whose output (stdout and stderr together) is kept for the test log.
type Proc struct {
	name  string
	grace time.Duration
	cmd   *exec.Cmd
	out   syncBuffer
	done  chan struct{} // closed once the process has been waited for
}

// Start runs the binary at path bin, failing the test if it cannot be started. When the test ends the process is
// stopped (see Stop) and, if the test failed, its output is logged.
func Start(t testing.TB, bin string, opts ...Option) *Proc {
	t.Helper()
	c := config{name: filepath.Base(bin), grace: DefaultGrace}
	for _, o := range opts {
		o(&c)
	}
	argv := append(append(append([]string(nil), c.prefix...), bin), c.args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	if c.env != nil {
		cmd.Env = append(os.Environ(), c.env...)
	}
	cmd.SysProcAttr = c.attr
	p := &Proc{name: c.name, grace: c.grace, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", p.name, p.out.String())
		}
	})
	return p
}

// Stop sends SIGTERM and waits for the process to exit; if it is still running after the grace period, Stop
// reports an error on t and kills it. Stopping a process that has exited does nothing.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(p.grace):
		t.Errorf("%s did not exit within %v of SIGTERM; killing it", p.name, p.grace)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Pid is the process id of the started command (the binary itself when a Prefix execs it in place).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// WaitFor calls ready every interval until it reports true. It fails the test if p (which may be nil) exits first,
// showing p's output, or if 30s pass, showing what ready last described.
func WaitFor(t testing.TB, p *Proc, what string, every time.Duration, ready func() (ok bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var last string
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			t.Fatalf("%s exited before %s was ready:\n%s", p.name, what, p.Output())
		}
		var ok bool
		if ok, last = ready(); ok {
			return
		}
		time.Sleep(every)
	}
	if last == "" {
		t.Fatalf("%s not ready after %v", what, readyTimeout)
	}
	t.Fatalf("%s not ready after %v (last: %s)", what, readyTimeout, last)
}

// WaitHTTP polls url with GET every 50ms until it answers the status want; see WaitFor.
func WaitHTTP(t testing.TB, p *Proc, url string, want int) {
	t.Helper()
	WaitFor(t, p, url, 50*time.Millisecond, func() (bool, string) {
		resp, err := http.Get(url)
		if err != nil {
			return false, err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == want, fmt.Sprintf("status %d, want %d: %s", resp.StatusCode, want, b)
	})
}

// syncBuffer is a bytes.Buffer the process's output goroutines and the test can use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
