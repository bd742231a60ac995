package kubetest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
)

// Shared is the one API server of a test package: started by the first test that asks for it, stopped by Run after
// the package's tests. The zero value is ready to use.
type Shared struct {
	// Options are used when the server is started.
	Options Options

	once sync.Once
	srv  *Server
	err  error
}

// Run runs the package's tests and then stops the server if one was started. Call it from TestMain:
// os.Exit(kube.Run(m)).
func (sh *Shared) Run(m *testing.M) int {
	code := m.Run()
	if sh.srv != nil {
		sh.srv.Stop()
	}
	return code
}

// Server returns the package's API server, starting it on first use. Without kube-apiserver or etcd it skips t,
// saying how to get them, unless the CI environment variable is set (to anything but "false"): in CI it fails t instead, so the suite cannot
// silently stop running there.
func (sh *Shared) Server(tb testing.TB) *Server {
	tb.Helper()
	sh.once.Do(func() {
		sh.srv, sh.err = Start(context.Background(), sh.Options)
	})
	switch {
	case sh.err == nil:
		return sh.srv
	case errors.Is(sh.err, ErrUnavailable) && !inCI():
		tb.Skipf("%v; set CI to make this a failure", sh.err)
	default:
		tb.Fatalf("%v", sh.err)
	}
	return nil
}

func inCI() bool {
	ci := os.Getenv("CI")
	return ci != "" && ci != "false"
}
