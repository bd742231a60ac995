//go:build adversarial

package adversarial

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testproc"
)

// Flood size: floodIPs client addresses (127.0.2.x) open floodPerIP connections each, well over both the
// per-IP cap and, together, the listener's cap.
const (
	floodIPs   = 30
	floodPerIP = 60
	// rssBound is the most resident memory a flooded process may have while the flood is held.
	rssBound = 150 << 20
	// fdSlack is what a process may open besides its baseline and one listener's cap (the accept in progress,
	// the controller's outbound connections, ...).
	fdSlack = 50
)

// flood opens floodIPs×floodPerIP idle TCP connections to addr and returns them; the caller closes them.
// Connections the listener refuses (closed at once, or not accepted in time) count too: the point is what the
// server holds.
func flood(t *testing.T, addr string) []net.Conn {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	for ip := 1; ip <= floodIPs; ip++ {
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(ip))}, Timeout: 5 * time.Second}
			for range floodPerIP {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue // the accept queue is full: the kernel, not the server, holds the rest
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return conns
}

// answersWithin calls check up to three times, each bounded by d, and reports the last error if none succeeds:
// one scheduling hiccup on a loaded machine is not a failure, a control plane that does not answer is.
func answersWithin(check func(time.Duration) error, d time.Duration) (time.Duration, error) {
	var err error
	for range 3 {
		start := time.Now()
		if err = check(d); err == nil {
			return time.Since(start), nil
		}
	}
	return 0, err
}

// TestConnectionFloodOnEveryListener holds a flood of idle connections on each public listener of the
// controller and of the sidecars in turn, and checks that the control plane's own intake (admin socket,
// /readyz, SSF push) answers within 1s meanwhile, and that the flooded process holds no more descriptors than
// the listener's cap allows and stays under rssBound.
func TestConnectionFloodOnEveryListener(t *testing.T) {
	testproc.RaiseFileLimit(t)
	f := startFixture(t)
	targets := []struct {
		name, addr string
		proc       *testproc.Proc
		// skip names the control-plane check served by the flooded listener itself: a flood from many
		// addresses that fills a listener's cap also delays its other clients; the cap protects the rest.
		skip string
	}{
		{"controller issuer", f.issuerAddr, f.controller, ""},
		{"controller xds", f.xdsAddr, f.controller, ""},
		{"controller token service", f.tokenAddr, f.controller, ""},
		{"controller SSF push", f.ssfAddr, f.controller, "SSF push"},
		{"controller ops", f.opsAddr, f.controller, "controller /readyz"},
		{"egress proxy", f.egressProxy, f.egress, ""},
		{"egress transparent", f.egressTransparent, f.egress, ""},
		{"egress admin", f.egressAdmin, f.egress, ""},
		{"ingress", f.ingressAddr, f.ingress, ""},
		{"ingress admin", f.ingressAdmin, f.ingress, ""},
	}
	initial := map[int]int{}
	for _, p := range []*testproc.Proc{f.controller, f.egress, f.ingress} {
		_, initial[p.Pid()] = procStatus(t, p.Pid())
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			// The previous flood's connections are closed by now on the client side; wait for the server's.
			baseFDs := initial[tg.proc.Pid()]
			testproc.WaitFor(t, tg.proc, "descriptors back to their level before the floods", 50*time.Millisecond, func() (bool, string) {
				_, n := procStatus(t, tg.proc.Pid())
				return n <= baseFDs+fdSlack, fmt.Sprintf("%d descriptors, %d at start", n, baseFDs)
			})
			conns := flood(t, tg.addr)
			defer func() {
				for _, c := range conns {
					c.Close()
				}
			}()
			for name, check := range f.controlPlaneChecks() {
				if name == tg.skip {
					continue
				}
				took, err := answersWithin(check, time.Second)
				if err != nil {
					t.Errorf("%s did not answer within 1s while %d connections to %s were held: %v", name, len(conns), tg.name, err)
					continue
				}
				t.Logf("%s answered in %v", name, took.Round(time.Millisecond))
			}
			rss, fds := procStatus(t, tg.proc.Pid())
			t.Logf("%d connections open from the client side; flooded process: RSS %d MiB, %d descriptors (%d before)",
				len(conns), rss>>20, fds, baseFDs)
			if rss > rssBound {
				t.Errorf("RSS %d MiB over the bound of %d MiB", rss>>20, rssBound>>20)
			}
			if fds > baseFDs+maxConns+fdSlack {
				t.Errorf("%d descriptors, over %d before + the listener's cap %d + %d", fds, baseFDs, maxConns, fdSlack)
			}
		})
	}
	// After the floods the pair still serves the agent: nothing was left broken.
	if out := fmt.Sprint(f.ctl(t, "sidecars")); len(out) == 0 {
		t.Fatal("no sidecars listed after the floods")
	}
}
