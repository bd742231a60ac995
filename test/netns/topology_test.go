package netns

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The test's private network: a /30 on a veth pair whose ends live in two namespaces the test creates, so these
// addresses exist nowhere else (each namespace has its own routing table) and concurrent runs cannot collide.
const (
	agentAddr = "10.233.0.1"
	toolAddr  = "10.233.0.2"
	prefixLen = "/30"
	nsPrefix  = "aa-e2e-"
)

// topology is the agent's and the tool's network namespaces.
type topology struct {
	agentNS, toolNS string
}

// newTopology creates the namespaces, the veth pair and its addresses, and brings up lo on both sides. Cleanup
// deletes both namespaces (which destroys the veth pair and every netfilter rule inside them) and checks that
// they are gone. Namespace names carry the test process's PID so a later run can remove what a killed run left.
func newTopology(t *testing.T) *topology {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces are Linux only")
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "not root (creating network namespaces and netfilter rules needs CAP_NET_ADMIN)")
	}
	requireTools(t, "ip", "curl", "setpriv")
	removeStale(t)

	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	base := nsPrefix + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:])
	topo := &topology{agentNS: base + "-a", toolNS: base + "-t"}

	if out, err := exec.Command("ip", "netns", "add", topo.agentNS).CombinedOutput(); err != nil {
		skipOrFail(t, "cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { topo.remove(t) })
	sh(t, "ip", "netns", "add", topo.toolNS)
	// Both ends are created inside the namespaces: the host namespace gets no interface, address or route.
	sh(t, "ip", "-n", topo.agentNS, "link", "add", "aa0", "type", "veth", "peer", "name", "aa1", "netns", topo.toolNS)
	for _, s := range []struct{ ns, dev, addr string }{{topo.agentNS, "aa0", agentAddr}, {topo.toolNS, "aa1", toolAddr}} {
		sh(t, "ip", "-n", s.ns, "addr", "add", s.addr+prefixLen, "dev", s.dev)
		sh(t, "ip", "-n", s.ns, "link", "set", s.dev, "up")
		sh(t, "ip", "-n", s.ns, "link", "set", "lo", "up")
	}
	return topo
}

// remove deletes both namespaces; it runs after every process in them has been stopped (cleanups run last
// registered first), and reports anything left behind.
func (topo *topology) remove(t *testing.T) {
	for _, ns := range []string{topo.agentNS, topo.toolNS} {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && nsExists(t, ns) {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
	for _, ns := range []string{topo.agentNS, topo.toolNS} {
		if nsExists(t, ns) {
			t.Errorf("network namespace %s is still there after cleanup", ns)
		}
	}
}

func listNS(t testing.TB) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(sh(t, "ip", "netns", "list"), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

func nsExists(t testing.TB, name string) bool {
	for _, n := range listNS(t) {
		if n == name {
			return true
		}
	}
	return false
}

// removeStale deletes namespaces of earlier runs whose test process no longer exists (a run killed by a
// timeout cannot clean up after itself); namespaces of runs still alive are left alone.
func removeStale(t testing.TB) {
	for _, n := range listNS(t) {
		rest, ok := strings.CutPrefix(n, nsPrefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", n).CombinedOutput(); err != nil {
			t.Logf("removing stale namespace %s: %v: %s", n, err, out)
		}
	}
}

// redirector installs and removes the agent namespace's interception rule: every TCP connection from a uid
// other than root (the sidecar's uid) to a non-loopback address goes to the transparent listener. Excluding
// the sidecar's own uid is what keeps its upstream connection from being redirected back into itself.
type redirector struct {
	name    string
	tool    string
	install [][]string
	remove  [][]string
	// present reports whether the rule is still in the namespace's ruleset.
	present func(t testing.TB, ns string) bool
}

// The recipe docs/transparent.md gives operators: the suite runs these files as they are, with the sidecar's uid
// (root here) and port as parameters, and TestRedirectRecipeDocumented checks the doc shows them unchanged.
const (
	nftRecipe      = "../../examples/redirect/agentauth.nft"
	iptablesRecipe = "../../examples/redirect/agentauth-iptables.sh"
)

func redirectors(port string) []redirector {
	return []redirector{
		{
			name:    "iptables",
			tool:    "iptables",
			install: [][]string{{"env", "SIDECAR_UID=0", "TRANSPARENT_PORT=" + port, "sh", iptablesRecipe, "install"}},
			remove:  [][]string{{"sh", iptablesRecipe, "remove"}},
			present: func(t testing.TB, ns string) bool {
				return strings.Contains(sh(t, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S"), "REDIRECT")
			},
		},
		{
			name:    "nftables",
			tool:    "nft",
			install: [][]string{{"nft", "-D", "sidecar_uid=0", "-D", "transparent_port=" + port, "-f", nftRecipe}},
			remove:  [][]string{{"nft", "delete", "table", "ip", "agentauth"}},
			present: func(t testing.TB, ns string) bool {
				return strings.Contains(sh(t, "ip", "netns", "exec", ns, "nft", "list", "tables"), "agentauth")
			},
		},
	}
}

// apply installs r in ns and registers its removal, which also checks that the rule is gone.
func (r redirector) apply(t *testing.T, ns string) {
	t.Helper()
	t.Cleanup(func() {
		for _, c := range r.remove {
			if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, c...)...).CombinedOutput(); err != nil {
				t.Errorf("removing the %s rule: %v: %s", r.name, err, out)
			}
		}
		if r.present(t, ns) {
			t.Errorf("the %s redirect rule is still in %s after removal", r.name, ns)
		}
	})
	for _, c := range r.install {
		sh(t, "ip", append([]string{"netns", "exec", ns}, c...)...)
	}
	if !r.present(t, ns) {
		t.Fatalf("the %s redirect rule is not in %s after installing it", r.name, ns)
	}
}
