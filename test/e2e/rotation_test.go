package e2e

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
)

// TestRotationUnderLoad: both sides' X.509-SVIDs and WITs are replaced on disk several times while the agent
// keeps calling; not one call fails, and both sidecars load every new credential.
func TestRotationUnderLoad(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[mtls, wpt]", ingressReq: "[mtls, wpt]", tls: true})

	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.agent()
			for ctx.Err() == nil {
				resp, err := c.Get("http://" + toolHost + "/whoami")
				if err == nil {
					body := readAll(t, resp)
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%d %s", resp.StatusCode, body)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		}()
	}

	const rotations = 3
	for i := 0; i < rotations; i++ {
		time.Sleep(400 * time.Millisecond)
		ca.WriteSVIDFiles(p.agentFiles.dir, ca.CreateX509SVID(agentID))
		ca.WriteWITFiles(p.agentFiles.dir, ca.CreateWITSVID(agentID))
		ca.WriteSVIDFiles(p.toolFiles.dir, ca.CreateX509SVID(toolID))
		ca.WriteWITFiles(p.toolFiles.dir, ca.CreateWITSVID(toolID))
		// Both sidecars pick the new files up (they poll every 200ms) before the next rotation.
		waitRotations(t, p.egressAdmin, i+2)
		waitRotations(t, p.ingressAdmin, i+2)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed during rotation; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 10 {
		t.Fatalf("only %d calls made: the load did not run", ok.Load())
	}
	t.Logf("%d calls, 0 failed, across %d rotations of both sides", ok.Load(), rotations)
}

var rotationsRE = regexp.MustCompile(`agentauth_credential_rotations_total\{result="success"\} (\d+)`)

// waitRotations waits until the sidecar's admin endpoint counts at least n successful credential loads.
func waitRotations(t *testing.T, admin string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + admin + "/metrics")
		if err == nil {
			m := rotationsRE.FindStringSubmatch(readAll(t, resp))
			if len(m) == 2 {
				if got, _ := strconv.Atoi(m[1]); got >= n {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not reach %d credential loads", admin, n)
}
