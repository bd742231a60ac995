package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestLocalSocketAttestation: the controller maps this test's uid to the agent's SPIFFE ID on its local issuer
// socket; the agent's sidecar, given that socket and no join token, gets credentials there and serves an allowed
// call that the tool sees as the agent's.
func TestLocalSocketAttestation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "issuer.sock") // the controller creates run/
	c := startControllerIssuer(t, dir, fmt.Sprintf(", localSocket: %s, peerIDs: [{uid: %d, spiffeID: %q}]", sock, os.Getuid(), agentID))
	p := startManagedPairWith(t, c, managedOptions{agentLocalSocket: sock})
	c.ctl(t, false, "policy", "apply", writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy))
	waitStatus(t, p, "http://"+toolHost+"/whoami", http.StatusOK)

	code, w, body := getWhoami(t, p.agent(), "http://"+toolHost+"/whoami", nil)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := w.Headers["x-agentauth-workload-id"]; len(got) != 1 || got[0] != agentID.String() {
		t.Fatalf("tool saw workload id %v, want [%s]", got, agentID)
	}
	mustContain(t, c.proc.out.String(), "issuer serving local workloads")
}
