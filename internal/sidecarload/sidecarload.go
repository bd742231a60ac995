// Package sidecarload runs a fleet of sidecars' xDS clients for benchmarks that time how fast the controller's
// revocations are enforced on many sidecars. Each sidecar has its own SVID and mTLS connection; they run in child
// processes of the benchmark (its test binary, re-executed), at most PerProcess each.
//
// Why several processes: a real sidecar is a process of its own, with a small heap that its own collector marks.
// A thousand clients in one process share a heap of a few hundred megabytes, and each collection of it holds up
// all of them at once for a quarter of a second, a pause no deployment has that would set the p99. Groups of 250
// keep the harness's heaps and pauses four times smaller, and a pause holds up a quarter of the sidecars.
package sidecarload

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/xds/xdsclient"
)

// PerProcess is the default number of sidecars in one child process.
const PerProcess = 250

const env = "AGENTAUTH_SIDECARLOAD"

// Config is what a fleet connects to and with.
type Config struct {
	// Target is the controller's xDS address, and Controller its SPIFFE ID, which the sidecars authorize.
	Target     string
	Controller spiffeid.ID
	// Bundle is the path of the trust domain's X.509 bundle (PEM).
	Bundle string
	// SVIDs is a directory holding sidecar i's SVID as I.crt and I.key (see WriteSVID).
	SVIDs string
	// N is the number of sidecars; PerProcess, if not zero, how many each child process runs.
	N, PerProcess int
}

// child is one process's share of the fleet, as the environment passes it.
type child struct {
	Config
	First, Count int
}

// WriteSVID writes sidecar i's SVID into dir, where Config.SVIDs finds it.
func WriteSVID(dir string, i int, svid *x509svid.SVID) error {
	certs, key, err := svid.Marshal()
	if err != nil {
		return err
	}
	base := filepath.Join(dir, strconv.Itoa(i))
	if err := os.WriteFile(base+".crt", certs, 0o600); err != nil {
		return err
	}
	return os.WriteFile(base+".key", key, 0o600)
}

// Fleet is the running sidecars.
type Fleet struct {
	tb    testing.TB
	hosts []*testproc.Child
}

// Start starts the child processes, which run the test named testName (it must call Serve), and returns once
// every sidecar holds the controller's whole state. The children stop with tb.
func Start(tb testing.TB, testName string, cfg Config) *Fleet {
	tb.Helper()
	per := cfg.PerProcess
	if per <= 0 {
		per = PerProcess
	}
	f := &Fleet{tb: tb}
	for first := 0; first < cfg.N; first += per {
		spec, err := json.Marshal(child{Config: cfg, First: first, Count: min(per, cfg.N-first)})
		if err != nil {
			tb.Fatal(err)
		}
		f.hosts = append(f.hosts, testproc.StartChild(tb, testName, env, string(spec), 2*time.Minute))
	}
	for _, h := range f.hosts {
		h.Read("synced")
	}
	return f
}

// Expect arms every sidecar to note when it first enforces a revocation of the SPIFFE ID subject: when its xDS
// client's state, just updated, refuses subject. It returns once all are armed.
func (f *Fleet) Expect(subject string) {
	for _, h := range f.hosts {
		h.Send("expect", subject)
	}
	for _, h := range f.hosts {
		h.Read("ready")
	}
}

// Enforced waits until every sidecar enforces the expected revocation and returns when each did, in order.
func (f *Fleet) Enforced() []time.Time {
	var out []time.Time
	for _, h := range f.hosts {
		h.Send("enforced")
		for _, field := range h.Read("enforced") {
			ns, err := strconv.ParseInt(field, 10, 64)
			if err != nil {
				f.tb.Fatalf("sidecarload: bad time %q", field)
			}
			out = append(out, time.Unix(0, ns))
		}
	}
	return out
}

// CPU is the CPU time the child processes have used so far.
func (f *Fleet) CPU() time.Duration {
	var total time.Duration
	for _, h := range f.hosts {
		h.Send("cpu")
		ns, err := strconv.ParseInt(h.Read("cpu")[0], 10, 64)
		if err != nil {
			f.tb.Fatal(err)
		}
		total += time.Duration(ns)
	}
	return total
}

// Serve is a child process's side: call it from the test that Start names. Run any other way it skips the test.
// It starts its share of the sidecars and answers the Fleet's commands on stdin until stdin closes.
func Serve(t *testing.T) {
	spec := os.Getenv(env)
	if spec == "" {
		t.Skip("runs only as a child process of sidecarload.Start")
	}
	var c child
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	testproc.RaiseFileLimit(t)
	bundle, err := x509bundle.Load(c.Controller.TrustDomain(), c.Bundle)
	if err != nil {
		t.Fatal(err)
	}

	var (
		subject  atomic.Pointer[string] // the revoked subject being waited for
		enforced = make([]atomic.Int64, c.Count)
		left     atomic.Int64 // sidecars yet to enforce it
		done     = make(chan struct{}, 1)
	)
	subject.Store(new(string))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	clients := make([]*xdsclient.Client, c.Count)
	for i := range clients {
		base := filepath.Join(c.SVIDs, strconv.Itoa(c.First+i))
		svid, err := x509svid.Load(base+".crt", base+".key")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := xdsclient.NewClient(xdsclient.ClientConfig{Target: c.Target, NodeID: svid.ID.String(),
			TLSConfig: tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeID(c.Controller)),
			OnUpdate: func(u xdsclient.Update) {
				sub := *subject.Load()
				if u.TypeURL != agentauthv1.RevocationType || sub == "" || enforced[i].Load() != 0 {
					return
				}
				now := time.Now()
				if clients[i].State().Revoked("spiffe", "", sub, time.Time{}, now) != nil &&
					enforced[i].CompareAndSwap(0, now.UnixNano()) && left.Add(-1) == 0 {
					done <- struct{}{}
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		clients[i] = cl
		wg.Go(func() { _ = cl.Run(ctx) })
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		synced := 0
		for _, cl := range clients {
			if cl.Status().Synced {
				synced++
			}
		}
		if synced == len(clients) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sidecars synced within a minute", synced, len(clients))
		}
	}
	fmt.Println("bench: synced")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 2 && f[0] == "expect":
			subject.Store(new(string)) // disarmed while the marks are reset
			for i := range enforced {
				enforced[i].Store(0)
			}
			left.Store(int64(c.Count))
			subject.Store(&f[1])
			fmt.Println("bench: ready")
		case len(f) == 1 && f[0] == "enforced":
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("%d of %d sidecars did not enforce the revocation of %s within a minute", left.Load(), c.Count, *subject.Load())
			}
			var line strings.Builder
			line.WriteString("bench: enforced")
			for i := range enforced {
				fmt.Fprintf(&line, " %d", enforced[i].Load())
			}
			fmt.Println(line.String())
		case len(f) == 1 && f[0] == "cpu":
			fmt.Printf("bench: cpu %d\n", testproc.CPUTime(t))
		default:
			t.Fatalf("unknown command %q", in.Text())
		}
	}
}
