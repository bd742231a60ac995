package testproc

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the child binary (testdata/child) that TestMain builds with Main.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(Main(m, &binDir, "./internal/testproc/testdata/child"))
}

func child() string { return filepath.Join(binDir, "child") }

// recorder is a testing.TB that records what a helper reports instead of failing the real test. Fatalf ends the
// calling goroutine, as the real one does, so helpers that may call it run under do.
type recorder struct {
	testing.TB
	failed bool

	mu       sync.Mutex
	errors   []string
	logs     []string
	fatal    string
	cleanups []func()
}

func (r *recorder) Helper()      {}
func (r *recorder) Failed() bool { return r.failed }
func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

// do runs f in a goroutine of its own (so Fatalf can end it) and returns what Fatalf reported, if anything.
func (r *recorder) do(f func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fatal
}

func (r *recorder) runCleanups() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// waitExit waits until p has ended (the child's "exit" mode ends at once).
func waitExit(t *testing.T, p *Proc) {
	t.Helper()
	WaitFor(t, nil, "the child's exit", 10*time.Millisecond, func() (bool, string) { return p.Exited(), "" })
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "testproc", "doc.go")); err != nil {
		t.Fatalf("ModuleRoot() = %s, which does not hold this package: %v", root, err)
	}
}

func TestBuildFails(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pkgs []string
		want string
	}{
		{"no packages", nil, "at least one package"},
		{"missing package", []string{"./internal/testproc/testdata/missing"}, "building ./internal/testproc/testdata/missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, cleanup, err := Build(root, tt.pkgs...)
			if err == nil || !strings.Contains(err.Error(), tt.want) || dir != "" || cleanup != nil {
				t.Fatalf("Build(%v) = %q, %v, %v; want an error containing %q", tt.pkgs, dir, cleanup != nil, err, tt.want)
			}
		})
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr() = %q (%v), want 127.0.0.1:port", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on FreeAddr's %s: %v", addr, err)
	}
	ln.Close()
}

func TestStartWaitStop(t *testing.T) {
	addr := FreeAddr(t)
	p := Start(t, child(), Args("serve", addr), Env("TESTPROC_GREETING=hello"))
	WaitHTTP(t, p, "http://"+addr+"/", http.StatusOK)
	if p.Pid() <= 0 || p.Exited() {
		t.Fatalf("Pid() = %d, Exited() = %v for a serving child", p.Pid(), p.Exited())
	}
	p.Stop(t)
	if !p.Exited() {
		t.Fatal("Exited() = false after Stop")
	}
	for _, want := range []string{"child serve " + addr + " greeting=hello", "stopped by SIGTERM"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("output %q lacks %q", p.Output(), want)
		}
	}
	p.Stop(t) // a second Stop of an ended process does nothing
}

func TestPrefix(t *testing.T) {
	// env(1) execs the binary in place, as ip netns exec and taskset do.
	p := Start(t, child(), Prefix("env", "TESTPROC_GREETING=from-prefix"), Args("exit"))
	waitExit(t, p)
	if want := "child exit greeting=from-prefix"; !strings.Contains(p.Output(), want) {
		t.Fatalf("output %q lacks %q", p.Output(), want)
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	p := Start(t, child(), Args("ignore-term"), Grace(100*time.Millisecond), Name("stubborn"))
	WaitFor(t, p, "SIGTERM being ignored", 10*time.Millisecond, func() (bool, string) {
		return strings.Contains(p.Output(), "ignoring SIGTERM"), p.Output()
	})
	rec := &recorder{TB: t}
	p.Stop(rec)
	if !p.Exited() {
		t.Fatal("Exited() = false after Stop killed the process")
	}
	if want := "stubborn did not exit within 100ms of SIGTERM; killing it"; len(rec.errors) != 1 || rec.errors[0] != want {
		t.Fatalf("Stop reported %q, want [%q]", rec.errors, want)
	}
}

func TestWaitFailsWhenProcessExits(t *testing.T) {
	p := Start(t, child(), Args("exit"))
	url := "http://" + FreeAddr(t) + "/"
	rec := &recorder{TB: t}
	got := rec.do(func() { WaitHTTP(rec, p, url, http.StatusOK) })
	if want := "child exited before " + url + " was ready:\nchild exit"; !strings.HasPrefix(got, want) {
		t.Fatalf("WaitHTTP failed with %q, want it to start with %q", got, want)
	}
}

func TestCleanup(t *testing.T) {
	tests := []struct {
		name     string
		failed   bool
		wantLogs []string
	}{
		{"passed test: output not logged", false, nil},
		{"failed test: output logged", true, []string{"---- child output ----\nchild exit greeting=\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TESTPROC_GREETING", "")
			rec := &recorder{TB: t, failed: tt.failed}
			p := Start(rec, child(), Args("exit"))
			waitExit(t, p)
			rec.runCleanups()
			if fmt.Sprint(rec.logs) != fmt.Sprint(tt.wantLogs) || len(rec.errors) != 0 {
				t.Fatalf("logs %q, errors %q; want logs %q and no errors", rec.logs, rec.errors, tt.wantLogs)
			}
		})
	}
}

func TestStartFails(t *testing.T) {
	rec := &recorder{TB: t}
	bin := filepath.Join(t.TempDir(), "missing")
	got := rec.do(func() { Start(rec, bin) })
	if !strings.HasPrefix(got, "start missing: ") {
		t.Fatalf("Start of a missing binary failed with %q, want \"start missing: ...\"", got)
	}
	if len(rec.cleanups) != 0 {
		t.Fatal("Start registered a cleanup for a process that never started")
	}
}
