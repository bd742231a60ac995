//go:build bench

package bench

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

var (
	rotationEvery    = flag.Duration("rotation.every", 10*time.Second, "how often both sidecars' X.509-SVIDs are replaced (each is valid twice that)")
	rotationDuration = flag.Duration("rotation.duration", 30*time.Second, "length of each measured phase of TestSidecarPairRotation")
)

// TestSidecarPairRotation measures what the re-handshakes cost that retiring connections before their
// certificates expire brings: the sidecar pair in mtls mode while both sidecars' X.509-SVIDs are replaced every
// -rotation.every (each valid twice that, so the egress retires its upstream connections about as often and
// handshakes again), against the same pair whose SVIDs do not change, in the same run and the same way as
// TestSidecarPair measures (fixed-rate latency, closed-loop max req/s), over phases long enough to span rotations.
//
//	go test -tags bench -run '^TestSidecarPairRotation$' -v ./test/bench -rounds 1 -rotation.duration 25s
func TestSidecarPairRotation(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads CPU time from /proc: Linux only")
	}
	if *numRounds < 1 || *rotationEvery <= 0 || *rotationDuration <= 0 {
		t.Fatal("-rounds, -rotation.every and -rotation.duration must be positive")
	}
	saved := *loadDuration
	*loadDuration = *rotationDuration
	defer func() { *loadDuration = saved }()

	e := &env{bin: buildBinaries(t), hz: ClockTicks()}
	e.pin = pinSelf(t)
	if e.pin.load >= 0 {
		runtime.GOMAXPROCS(1)
	}
	ca := testca.New(t, trustDomain)
	life := 2 * *rotationEvery
	// No commas: the names become temporary directories, which the sidecars' YAML lists.
	const still, rotating = "sidecar mtls static SVIDs", "sidecar mtls rotating SVIDs"
	systems := []system{
		{name: still, start: func(t *testing.T, _ *env, toolAddr string) ([]*proc, *url.URL, string) {
			s := *e
			s.agent, s.tool = issue(t, ca, agentID), issue(t, ca, toolID)
			return startSidecars("mtls", true)(t, &s, toolAddr)
		}, wantBody: agentID.String()},
		{name: rotating, start: func(t *testing.T, _ *env, toolAddr string) ([]*proc, *url.URL, string) {
			s := *e
			// Short-lived SVIDs; the WITs (unused in mtls mode, but loaded with them) keep their hour.
			s.agent, s.tool = issue(t, ca, agentID), issue(t, ca, toolID)
			ca.WriteSVIDFiles(s.agent.dir, ca.CreateX509SVID(agentID, testca.WithTTL(life)))
			ca.WriteSVIDFiles(s.tool.dir, ca.CreateX509SVID(toolID, testca.WithTTL(life)))
			s.agent.reload, s.tool.reload = time.Second, time.Second
			rotate(t, ca, *rotationEvery, life, map[spiffeid.ID]creds{agentID: s.agent, toolID: s.tool})
			return startSidecars("mtls", true)(t, &s, toolAddr)
		}, wantBody: agentID.String()},
	}
	rounds := map[string][]figures{}
	for i := range *numRounds {
		for j := range systems {
			s := systems[(i+j)%len(systems)]
			t.Run(fmt.Sprintf("round%d/%s", i+1, s.name), func(t *testing.T) {
				if f, ok := measure(t, e, s, false); ok {
					rounds[s.name] = append(rounds[s.name], f)
				}
			})
		}
	}
	a, b := rounds[still], rounds[rotating]
	if len(a) == 0 || len(b) == 0 {
		t.Fatal("a system failed in every round (see the log)")
	}
	r, s := medians(b), medians(a)
	fmt.Fprintf(os.Stdout, "\nagentauth sidecar pair, mtls mode, SVIDs rotated every %s (valid %s) vs not rotated, %d round(s) of %s + %s phases, %s\n",
		*rotationEvery, life, *numRounds, *loadDuration, *loadDuration, e.pin.note)
	fmt.Fprintf(os.Stdout, "  %-30s p50 %s  p99 %s  max %.0f req/s  CPU/req %s\n", still, ms(s.p50), ms(s.p99), s.rps, us(s.cpuPerReqMax))
	fmt.Fprintf(os.Stdout, "  %-30s p50 %s  p99 %s  max %.0f req/s  CPU/req %s\n", rotating, ms(r.p50), ms(r.p99), r.rps, us(r.cpuPerReqMax))
	fmt.Fprintf(os.Stdout, "  rotation: max req/s %.2fx, p99 %+.3fms\n", r.rps/s.rps, float64(r.p99-s.p99)/float64(time.Millisecond))
}

// rotate replaces each workload's SVID files every every with one valid life, until the test ends.
func rotate(t *testing.T, ca *testca.CA, every, life time.Duration, ws map[spiffeid.ID]creds) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for id, c := range ws {
				ca.WriteSVIDFiles(c.dir, ca.CreateX509SVID(id, testca.WithTTL(life)))
			}
		}
	})
}
