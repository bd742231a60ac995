//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
)

var (
	loadRate     = flag.Int("load.rate", 1000, "fixed request rate of the latency and CPU phase (req/s)")
	loadDuration = flag.Duration("load.duration", 3*time.Second, "length of each measured phase")
	// The half-capacity phase decides issue 19's p99 target, so it runs longer: its latencies are pooled over the
	// rounds, and at about 1,000 req/s 4 rounds of 6s give a p99 resting on the 240 slowest of 24,000 requests.
	halfDuration = flag.Duration("load.half.duration", 6*time.Second, "length of the measured fixed-rate phase at half the row's max req/s")
	loadWarmup   = flag.Duration("load.warmup", time.Second, "warm-up before each measured phase")
	loadConns    = flag.Int("load.conns", 8, "concurrent keep-alive connections of the max-throughput phase")
	numRounds    = flag.Int("rounds", 4, "rounds over every system, in ABBA order; each figure is the median over the rounds")
	onlySystems  = flag.String("systems", "", "regexp: measure only the rows whose name matches, with the rows they are compared with (e.g. -systems audit)")
	strict       = flag.Bool("strict", false, "fail when a target is missed (off by default: shared machines are noisy)")
	// A measurement whose probe of the proxies' core is further than this from the run's median is repeated.
	probeTolerance = flag.Float64("probe.tolerance", 0.15, "largest relative distance of a measurement's core-speed probe from the run's median")
	probeRetries   = flag.Int("probe.retries", 2, "how often measurements with an outlying probe are repeated at most")
	// With -profile.dir the sidecars serve /debug/pprof, and a CPU profile of each is taken over every measured
	// closed-loop phase (the max-throughput figure), named after the round, the row and the sidecar.
	// It also takes each sidecar's allocation profile over the fixed-rate phase and a runtime/trace over the
	// half-capacity phase (GC, scheduling latency; tracing costs some latency of its own).
	profileDir = flag.String("profile.dir", "", "write each sidecar's CPU profile of every measured closed-loop phase, allocation profile of the fixed-rate phase and runtime trace of the half-capacity phase to this directory")
	// A sidecar samples one allocation per 512 KiB by default: with 1, its allocation profiles count every object,
	// to find where a row's allocations come from (recording each slows the sidecar: not for timing).
	profileMemRate = flag.Int("profile.memrate", 0, "with -profile.dir: the sidecars' runtime.MemProfileRate (GODEBUG=memprofilerate), 1 to record every allocation; 0 keeps Go's default")
)

var (
	trustDomain = spiffeid.RequireTrustDomainFromString("example.org")
	agentID     = spiffeid.RequireFromString("spiffe://example.org/agent/planner")
	toolID      = spiffeid.RequireFromString("spiffe://example.org/tool/weather")
	bareEgID    = spiffeid.RequireFromString("spiffe://example.org/bench/bare-egress")
	bareInID    = spiffeid.RequireFromString("spiffe://example.org/bench/bare-ingress")
)

const (
	toolHost    = "weather.tools.local"
	bareTLSName = "bare-ingress.bench.local"
	// mcpBody is an MCP tools/call, what an agent sends a tool; the sample tool answers with ~200 bytes of JSON.
	mcpBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"weather in Paris"}}}`
)

// Issue 4's targets.
const (
	maxAddedP50     = 500 * time.Microsecond
	maxAddedP99     = time.Millisecond
	minTputVsBare   = 0.9
	maxCPUOverFloor = 1.3
)

// Issue 19's targets: proofs alone (beyond the same pair in mtls mode) in units of one sign + one verify, allocation
// against mtls mode, and latency added at half the row's own capacity.
const (
	maxProofsOverFloor = 2.0
	maxAllocVsMTLS     = 1.5
	maxAddedP50Half    = 500 * time.Microsecond
	maxAddedP99Half    = 2 * time.Millisecond
)

type targetKind int

const (
	noTarget     targetKind = iota
	tputTarget              // mtls: throughput against the bare TLS pair
	cryptoTarget            // wpt, httpsig: CPU beyond the baseline against one signature + one verification
)

// system is one thing measured: how to start it, and what its row is compared with.
type system struct {
	name     string
	baseline string // the bare pair this row's throughput and CPU are compared with; "" for the baselines
	target   targetKind
	note     string // shown under the table
	// proofsVs is the sidecar row without proofs over the same transport, for the reference figure "proofs alone":
	// what the proofs add to the same sidecar pair, without the difference between a sidecar and a bare proxy.
	proofsVs string
	// auditVs is the same sidecar pair with audit off, for the audit rows' throughput and added p99.
	auditVs string
	// alg is the workload key algorithm of a proof row, whose sign + verify is its ÷crypto unit: "" (ES256) or EdDSA.
	alg string
	// variantOf is the row this one varies a setting of (issue 19: GC, HPACK table), for the variants table.
	variantOf string
	start     func(t *testing.T, e *env, toolAddr string) (sut []*proc, proxy *url.URL, target string)
	wantBody  string // what the tool's answer must contain: for sidecar pairs, the verified caller's SPIFFE ID
}

type env struct {
	bin string
	hz  int64
	pin pinning
	// loadNote records how busy the machine was.
	loadNote string
	// Credentials from one test CA: the sidecars', and the bare TLS pair's (which also carry a DNS name, since a
	// bare Go proxy verifies host names). agentEd and toolEd hold WITs bound to Ed25519 workload keys.
	agent, tool, bareEg, bareIn creds
	agentEd, toolEd             creds
}

// figures are one system's measurements in one round, or the medians over the rounds.
type figures struct {
	p50, p99                time.Duration // latency at the fixed rate (-load.rate)
	rps                     float64       // closed-loop throughput
	cpuPerReq, cpuPerReqMax time.Duration // proxies' CPU per request at the fixed rate and in the closed loop
	busyMax                 float64       // proxies' CPU seconds per wall second in the closed loop
	// With measure's full set only:
	halfRate   int           // half the closed-loop throughput, the rate of the second fixed-rate phase
	p50h, p99h time.Duration // latency at halfRate
	// The phases' latencies, ascending, to pool over the rounds: at the fixed rate, and at halfRate.
	lat, latHalf []time.Duration
	lagHalf      time.Duration // the load generator's p99 lag at halfRate (LatencyResult.Lags)
	probe        speed         // the proxies' core: mean of the speed probes before and after the measurement
	alloc        []allocs      // per request at the fixed rate, one per sidecar (egress, ingress); nil for the others
	wrote        []float64     // bytes each process under test wrote (wchar) per request at the fixed rate
	mem          []Memory      // each process under test's resident memory at the end of the closed loop
}

func TestSidecarPair(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads CPU time from /proc: Linux only")
	}
	if *numRounds < 1 || *loadRate < 1 || *loadConns < 1 || *loadDuration <= 0 || *halfDuration <= 0 || *probeTolerance <= 0 || *probeRetries < 0 {
		t.Fatal("-rounds, -load.rate, -load.conns, -load.duration, -load.half.duration and -probe.tolerance must be positive, -probe.retries not negative")
	}
	e := &env{bin: buildBinaries(t), hz: ClockTicks()}
	e.pin = pinSelf(t)
	if e.pin.load >= 0 {
		runtime.GOMAXPROCS(1) // one CPU now, like every pinned process under test
	}
	ca := testca.New(t, trustDomain)
	e.agent, e.tool = issue(t, ca, agentID), issue(t, ca, toolID)
	e.bareEg, e.bareIn = issue(t, ca, bareEgID), issue(t, ca, bareInID, testca.WithDNSNames(bareTLSName))
	e.agentEd, e.toolEd = issueEd25519(t, ca, agentID), issueEd25519(t, ca, toolID)

	var err error
	systems := []system{
		{name: directRow, start: startDirect, wantBody: "tools/call search"},
		{name: "bare pair, plain h1", start: startBare(false), wantBody: "tools/call search"},
		{name: "bare pair, mTLS h2", start: startBare(true), wantBody: "tools/call search"},
		{name: "sidecar mtls", baseline: "bare pair, mTLS h2", target: tputTarget,
			start: startSidecars("mtls", true), wantBody: agentID.String()},
		{name: "sidecar wpt (TLS)", baseline: "bare pair, mTLS h2", target: cryptoTarget, proofsVs: "sidecar mtls",
			start: startSidecars("wpt", true), wantBody: agentID.String()},
		{name: "sidecar httpsig (TLS)", baseline: "bare pair, mTLS h2", target: cryptoTarget, proofsVs: "sidecar mtls",
			start: startSidecars("httpsig", true), wantBody: agentID.String()},
		// Issue 19 item 5: the same proof rows with Ed25519 workload keys (identity.witProfile: wimse), each
		// measured in units of its own algorithm's sign + verify.
		{name: "sidecar wpt-ed25519 (TLS)", baseline: "bare pair, mTLS h2", target: cryptoTarget, proofsVs: "sidecar mtls",
			alg: "EdDSA", start: startSidecarsWith("wpt", true, true, ""), wantBody: agentID.String()},
		{name: "sidecar httpsig-ed25519 (TLS)", baseline: "bare pair, mTLS h2", target: cryptoTarget, proofsVs: "sidecar mtls",
			alg: "EdDSA", start: startSidecarsWith("httpsig", true, true, ""), wantBody: agentID.String()},
		{name: "sidecar httpsig (plain)", baseline: "bare pair, plain h1", target: cryptoTarget,
			note:  "httpsig (plain) is an extra row, not an issue target: the same checks against the plain bare pair",
			start: startSidecars("httpsig", false), wantBody: agentID.String()},
		// Issue 18: the same mtls pair with both sidecars' audit logs on (a record fsynced before each decision
		// takes effect), compared with audit off in the same run.
		{name: "sidecar mtls, audit batched", baseline: "bare pair, mTLS h2", auditVs: "sidecar mtls",
			start: startSidecars("mtls", true, "batched"), wantBody: agentID.String()},
		{name: "sidecar mtls, audit sync", baseline: "bare pair, mTLS h2", auditVs: "sidecar mtls",
			start: startSidecars("mtls", true, "sync"), wantBody: agentID.String()},
		// Issue 19: the GC percentage (Go's default 100 against higher ones) and a larger HPACK table between the
		// sidecars, each against the same pair in the same round.
		{name: "sidecar wpt, gcPercent 100", variantOf: "sidecar wpt (TLS)",
			start: startSidecarsWith("wpt", true, false, "runtime: {gcPercent: 100}\n"), wantBody: agentID.String()},
		{name: "sidecar wpt, gcPercent 200", variantOf: "sidecar wpt, gcPercent 100",
			start: startSidecarsWith("wpt", true, false, "runtime: {gcPercent: 200}\n"), wantBody: agentID.String()},
		{name: "sidecar wpt, gcPercent 400", variantOf: "sidecar wpt, gcPercent 100",
			start: startSidecarsWith("wpt", true, false, "runtime: {gcPercent: 400}\n"), wantBody: agentID.String()},
		// The default (200) against 400 on the other proof mode, for the tail at half capacity (fewer collections
		// coinciding with requests) against memory.
		{name: "sidecar httpsig, gcPercent 400", variantOf: "sidecar httpsig (TLS)",
			start: startSidecarsWith("httpsig", true, false, "runtime: {gcPercent: 400}\n"), wantBody: agentID.String()},
		{name: "sidecar wpt, HPACK 16KiB", variantOf: "sidecar wpt (TLS)",
			start: startSidecarsWith("wpt", true, false, "limits: {http2HeaderTableSize: 16384}\n"), wantBody: agentID.String()},
		{name: "sidecar wpt, HPACK 64KiB", variantOf: "sidecar wpt (TLS)",
			start: startSidecarsWith("wpt", true, false, "limits: {http2HeaderTableSize: 65536}\n"), wantBody: agentID.String()},
	}
	if systems, err = selectSystems(systems, *onlySystems); err != nil {
		t.Fatal(err)
	}
	// The systems run interleaved in ABBA order (forward in even rounds, backward in odd ones), so a slow phase of
	// the machine, or a drift over the run, falls on every system about equally; each figure is then the median over
	// the rounds, and each ratio is taken round by round.
	run := &pairRun{rounds: map[string][]*figures{}}
	measureOne := func(i int, s system, what string) *figures {
		var out *figures
		t.Run(fmt.Sprintf("round%d/%s%s", i+1, s.name, what), func(t *testing.T) {
			if f, ok := measure(t, e, s, true); ok {
				out = &f
			}
		})
		return out
	}
	loadBefore := loadAvg()
	for i := range *numRounds {
		run.floors = append(run.floors, measureCryptoFloor(t))
		for j := range systems {
			k := j
			if i%2 == 1 {
				k = len(systems) - 1 - j
			}
			s := systems[k]
			run.rounds[s.name] = append(run.rounds[s.name], nil)
			run.rounds[s.name][i] = measureOne(i, s, "")
		}
	}
	// The probe on the proxies' core before and after each measurement tells how fast that core was meanwhile. A
	// measurement taken while it was far from its usual speed (another tenant, frequency scaling) is repeated.
	run.speed = medianSpeed(run.all())
	for range *probeRetries {
		again := 0
		for _, s := range systems {
			for i, f := range run.rounds[s.name] {
				if f == nil || !run.outlier(f) {
					continue
				}
				again++
				run.repeated++
				// Kept if its probe is nearer the median: the core may have been slow again.
				if g := measureOne(i, s, " (repeated: probe off)"); g != nil && run.offBy(g) < run.offBy(f) {
					run.rounds[s.name][i] = g
				}
			}
		}
		if again == 0 {
			break
		}
	}
	for _, f := range run.all() {
		if run.outlier(f) {
			run.stillOff++
		}
	}
	run.floor = medianSpeed(run.all())
	e.loadNote = fmt.Sprintf("load average (1/5/15 min) before: %s, after: %s — anything above %d means other work competed for the CPUs",
		loadBefore, loadAvg(), runtime.NumCPU())
	missed := report(os.Stdout, e, systems, run)
	if *strict && missed > 0 {
		t.Errorf("%d target(s) missed", missed)
	}
}

func startDirect(_ *testing.T, _ *env, toolAddr string) ([]*proc, *url.URL, string) {
	return nil, nil, "http://" + toolAddr + "/mcp"
}

// startBare starts two bareproxy processes: egress-like (HTTP_PROXY-style listener) → ingress-like → the tool.
func startBare(tlsOn bool) func(*testing.T, *env, string) ([]*proc, *url.URL, string) {
	return func(t *testing.T, e *env, toolAddr string) ([]*proc, *url.URL, string) {
		inAddr, egAddr := freeAddr(t), freeAddr(t)
		inArgs := []string{"-listen", inAddr, "-upstream", "http://" + toolAddr}
		egArgs := []string{"-listen", egAddr}
		if tlsOn {
			inArgs = append(inArgs, "-cert", e.bareIn.cert, "-key", e.bareIn.key, "-client-ca", e.bareIn.bundlePEM)
			egArgs = append(egArgs, "-upstream", "https://"+inAddr, "-upstream-cert", e.bareEg.cert,
				"-upstream-key", e.bareEg.key, "-upstream-ca", e.bareEg.bundlePEM, "-upstream-server-name", bareTLSName)
		} else {
			egArgs = append(egArgs, "-upstream", "http://"+inAddr)
		}
		in := start(t, e.bin, e.pin.sut, "bareproxy", inArgs...)
		waitReady(t, in, inAddr, listening(inAddr))
		eg := start(t, e.bin, e.pin.sut, "bareproxy", egArgs...)
		waitReady(t, eg, egAddr, listening(egAddr))
		return []*proc{eg, in}, &url.URL{Scheme: "http", Host: egAddr}, "http://" + toolHost + "/mcp"
	}
}

// startSidecars starts an ingress sidecar in front of the tool and an egress sidecar for the agent, with the
// route's mode on both sides. With tlsOn the ingress terminates TLS with its X.509-SVID (client certificates are
// demanded only in mtls mode) and the pair speaks HTTP/2; without, plain HTTP/1.1. With an audit durability, both
// sidecars keep an audit log (in a temporary directory) with it.
func startSidecars(mode string, tlsOn bool, auditDurability ...string) func(*testing.T, *env, string) ([]*proc, *url.URL, string) {
	return startSidecarsWith(mode, tlsOn, false, "", auditDurability...)
}

// startSidecarsWith is startSidecars, with Ed25519 workload keys (WITs with cnf.jwk.alg EdDSA, and both sidecars on
// identity.witProfile: wimse) when ed25519 is set, and extra top-level YAML in both sidecars' configs.
func startSidecarsWith(mode string, tlsOn, ed25519 bool, extra string, auditDurability ...string) func(*testing.T, *env, string) ([]*proc, *url.URL, string) {
	return func(t *testing.T, e *env, toolAddr string) ([]*proc, *url.URL, string) {
		agent, tool, wimse := e.agent, e.tool, ""
		if ed25519 {
			agent, tool, wimse = e.agentEd, e.toolEd, "  witProfile: wimse\n  witAlgorithms: [EdDSA, ES256]\n"
		}
		inAddr, inAdmin, egAddr, egAdmin := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
		// The plain row is a loopback measurement: the proofs may travel in cleartext only when told to.
		scheme, mtlsBlock, routeExtra := "http", "  allowCleartextProofs: true\n", "      allowCleartextProofs: true\n"
		if tlsOn {
			scheme, mtlsBlock, routeExtra = "https", "  mtls:\n    trustDomains: [example.org]\n", ""
		}
		td := trustDomain.Name()
		inCfg := tool.identityYAML(td) + wimse + fmt.Sprintf(`ingress:
  listen: %s
  backend: http://%s
%s  require: [%s]
  host: %s
admin:
  listen: %s
  pprof: %t
shutdownGrace: 2s
`, inAddr, toolAddr, mtlsBlock, mode, toolHost, inAdmin, *profileDir != "")
		egCfg := agent.identityYAML(td) + wimse + fmt.Sprintf(`egress:
  proxyListen: %s
  routes:
    - name: weather
      host: %s
      upstream: %s://%s
      modes: [%s]
      serverID: %s
%sadmin:
  listen: %s
  pprof: %t
shutdownGrace: 2s
`, egAddr, toolHost, scheme, inAddr, mode, toolID, routeExtra, egAdmin, *profileDir != "")
		inCfg, egCfg = inCfg+extra, egCfg+extra
		for _, d := range auditDurability {
			inCfg += fmt.Sprintf("audit: {dir: %q, durability: %s}\n", t.TempDir(), d)
			egCfg += fmt.Sprintf("audit: {dir: %q, durability: %s}\n", t.TempDir(), d)
		}
		in := start(t, e.bin, e.pin.sut, "sidecar", "-config", writeFile(t, t.TempDir(), "ingress.yaml", inCfg))
		waitReady(t, in, "ingress /readyz", answers200("http://"+inAdmin+"/readyz"))
		eg := start(t, e.bin, e.pin.sut, "sidecar", "-config", writeFile(t, t.TempDir(), "egress.yaml", egCfg))
		waitReady(t, eg, "egress /readyz", answers200("http://"+egAdmin+"/readyz"))
		in.metrics, eg.metrics = "http://"+inAdmin+"/metrics", "http://"+egAdmin+"/metrics"
		in.admin, eg.admin = "http://"+inAdmin, "http://"+egAdmin
		in.name, eg.name = "ingress", "egress"
		return []*proc{eg, in}, &url.URL{Scheme: "http", Host: egAddr}, "http://" + toolHost + "/mcp"
	}
}

// directRow is the agent calling the tool with no proxy between them: every added latency is against it.
const directRow = "direct (agent→tool)"

// measure starts a fresh tool and s, checks one call, then runs the fixed-rate phase (latency, CPU per request)
// and the closed-loop phase (max throughput), each after a warm-up. With full it also probes the proxies' core
// before and after, counts the sidecars' allocations in the fixed-rate phase from their Go runtime counters, and
// runs a second fixed-rate phase at half the closed-loop throughput just measured: at 1,000 req/s a slow pair on
// one core may be close to its capacity, and the latency it shows there is queueing rather than added work. ok is
// false when any request failed.
func measure(t *testing.T, e *env, s system, full bool) (f figures, ok bool) {
	toolAddr := freeAddr(t)
	tool := start(t, e.bin, e.pin.load, "sampletool", "-listen", toolAddr)
	waitReady(t, tool, toolAddr, listening(toolAddr))
	sut, proxy, target := s.start(t, e, toolAddr)

	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy) // the agent only knows HTTP_PROXY
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	do := func(ctx context.Context) error {
		_, err := call(ctx, client, target)
		return err
	}
	ctx := context.Background()
	body, err := call(ctx, client, target)
	if err != nil || !strings.Contains(body, s.wantBody) {
		t.Fatalf("first call: %v; the tool answered %q, want it to contain %q", err, body, s.wantBody)
	}

	cpu := func() time.Duration {
		var sum time.Duration
		for _, p := range sut {
			c, err := CPUTime(p.pid(), e.hz)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			sum += c
		}
		return sum
	}
	var before speed
	if full {
		before = probeSpeed(t, e)
	}
	FixedRate(ctx, do, *loadRate, *loadWarmup)
	var counts []allocCounter
	if full {
		counts = startAllocCount(t, sut)
	}
	w0 := written(t, sut)
	allocProfiled := startProfiles(t, sut, t.Name(), "allocs", *loadDuration)
	c0 := cpu()
	lat := FixedRate(ctx, do, *loadRate, *loadDuration)
	c1 := cpu()
	allocProfiled(lat.Sent)
	for i, w := range written(t, sut) {
		f.wrote = append(f.wrote, float64(w-w0[i])/float64(max(1, lat.Sent)))
	}
	if full {
		f.alloc = stopAllocCount(t, counts, lat.Sent)
	}
	ClosedLoop(ctx, do, *loadConns, *loadWarmup)
	c2 := cpu()
	profiled := startProfiles(t, sut, t.Name(), "profile", *loadDuration)
	tput := ClosedLoop(ctx, do, *loadConns, *loadDuration)
	c3 := cpu()
	profiled(tput.Done)
	for _, p := range sut {
		m, err := ProcMemory(p.pid())
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		f.mem = append(f.mem, m)
	}
	half := LatencyResult{Latencies: []time.Duration{0}}
	// The direct call's own half capacity is beyond what one load generator paces (several thousand req/s), and
	// every added latency is taken against its fixed-rate figures: it has no half-capacity phase.
	if full && s.name != directRow {
		f.halfRate = max(1, int(tput.PerSecond()/2))
		FixedRate(ctx, do, f.halfRate, *loadWarmup)
		traced := startProfiles(t, sut, t.Name(), "trace", *halfDuration)
		half = FixedRate(ctx, do, f.halfRate, *halfDuration)
		traced(half.Sent)
	}
	if full {
		after := probeSpeed(t, e)
		f.probe = speed{sign: (before.sign + after.sign) / 2, verify: (before.verify + after.verify) / 2,
			edSign: (before.edSign + after.edSign) / 2, edVerify: (before.edVerify + after.edVerify) / 2}
	}
	if lat.Failed > 0 || tput.Failed > 0 || half.Failed > 0 || len(lat.Latencies) == 0 || tput.Done == 0 || len(half.Latencies) == 0 {
		t.Errorf("%d of %d fixed-rate, %d closed-loop and %d of %d half-capacity requests failed; first: %v / %v / %v",
			lat.Failed, lat.Sent, tput.Failed, half.Failed, half.Sent, lat.FirstErr, tput.FirstErr, half.FirstErr)
		return f, false
	}
	f.p50, f.p99 = lat.Percentile(50), lat.Percentile(99)
	f.p50h, f.p99h = half.Percentile(50), half.Percentile(99)
	f.lat, f.latHalf, f.lagHalf = lat.Latencies, half.Latencies, Percentile(half.Lags, 99)
	f.rps = tput.PerSecond()
	f.cpuPerReq = (c1 - c0) / time.Duration(len(lat.Latencies))
	f.cpuPerReqMax = (c3 - c2) / time.Duration(tput.Done)
	f.busyMax = (c3 - c2).Seconds() / tput.Elapsed.Seconds()
	return f, true
}

// written returns the bytes each process in sut has written so far (WrittenBytes).
func written(t *testing.T, sut []*proc) []int64 {
	t.Helper()
	var out []int64
	for _, p := range sut {
		w, err := WrittenBytes(p.pid())
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		out = append(out, w)
	}
	return out
}

// call POSTs an MCP tools/call to url and returns the answer, which must be a 200.
func call(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(mcpBody))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return b.String(), fmt.Errorf("status %d: %.200s", resp.StatusCode, b.String())
	}
	return b.String(), nil
}

// cryptoFloor is the cost of the cryptography a wpt or httpsig request cannot avoid: one ES256 signature (egress)
// and one verification (ingress; the WIT's own verification is cached). jose is what the same signature and
// verification cost through go-jose, the JOSE library the project uses for WPTs (sign and serialize; parse and
// verify): the part of the budget the library itself takes before any proxy work.
type cryptoFloor struct{ sign, verify, jose time.Duration }

func (f cryptoFloor) total() time.Duration { return f.sign + f.verify }

// wptClaims are a WPT's claims as the benchmark's egress mints them: no access or transaction token to bind.
const wptClaims = `{"aud":"https://weather.tools.local/mcp","exp":1764120000,"jti":"3b0a3c2c1b9f4a7e9a7e8d2f1b3c4d5e",` +
	`"wth":"uX1vKkq7cQq3x9Xx0Xx0Xx0Xx0Xx0Xx0Xx0Xx0Xx0Xx"}`

// measureCryptoFloor times the bare primitives (ECDSA P-256 over SHA-256, ASN.1 signatures, so no JWS or
// structured-field encoding) on a 330-byte input, the size of a WPT's signing input, and the same through go-jose:
// the median of 7 rounds.
func measureCryptoFloor(t *testing.T) cryptoFloor {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	input := make([]byte, 330)
	_, _ = rand.Read(input)
	h := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("wpt+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	const rounds, per = 7, 300
	var signs, verifies, joses []time.Duration
	for range rounds {
		t0 := time.Now()
		for range per {
			h := sha256.Sum256(input)
			if _, err := ecdsa.SignASN1(rand.Reader, key, h[:]); err != nil {
				t.Fatal(err)
			}
		}
		signs = append(signs, time.Since(t0)/per)
		t0 = time.Now()
		for range per {
			h := sha256.Sum256(input)
			if !ecdsa.VerifyASN1(&key.PublicKey, h[:], sig) {
				t.Fatal("verify failed")
			}
		}
		verifies = append(verifies, time.Since(t0)/per)
		t0 = time.Now()
		for range per {
			joseSignVerify(t, signer, &key.PublicKey)
		}
		joses = append(joses, time.Since(t0)/per)
	}
	return cryptoFloor{sign: median(signs), verify: median(verifies), jose: median(joses)}
}

func joseSignVerify(t *testing.T, signer jose.Signer, pub *ecdsa.PublicKey) {
	t.Helper()
	jws, err := signer.Sign([]byte(wptClaims))
	if err != nil {
		t.Fatal(err)
	}
	compact, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsed.Verify(pub); err != nil {
		t.Fatal(err)
	}
}

func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// medians returns the per-field median of the rounds.
func medians(rs []figures) figures {
	pick := func(get func(figures) time.Duration) time.Duration {
		var xs []time.Duration
		for _, r := range rs {
			xs = append(xs, get(r))
		}
		return median(xs)
	}
	pickF := func(get func(figures) float64) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, get(r))
		}
		return median(xs)
	}
	return figures{
		p50:          pick(func(f figures) time.Duration { return f.p50 }),
		p99:          pick(func(f figures) time.Duration { return f.p99 }),
		cpuPerReq:    pick(func(f figures) time.Duration { return f.cpuPerReq }),
		cpuPerReqMax: pick(func(f figures) time.Duration { return f.cpuPerReqMax }),
		rps:          pickF(func(f figures) float64 { return f.rps }),
		busyMax:      pickF(func(f figures) float64 { return f.busyMax }),
	}
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// selectSystems keeps the systems whose name matches expr, the ones they are compared with (baseline, proofsVs,
// auditVs), and the first (the direct call, which every added latency is taken against), in their order. An empty
// expr keeps all.
func selectSystems(all []system, expr string) ([]system, error) {
	if expr == "" {
		return all, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("-systems: %w", err)
	}
	keep := map[string]bool{all[0].name: true}
	for _, s := range all {
		if re.MatchString(s.name) {
			keep[s.name] = true
			for _, dep := range []string{s.baseline, s.proofsVs, s.auditVs, s.variantOf} {
				keep[dep] = dep != ""
			}
		}
	}
	var out []system
	for _, s := range all {
		if keep[s.name] {
			out = append(out, s)
		}
	}
	if len(out) == 1 && !re.MatchString(all[0].name) {
		return nil, fmt.Errorf("-systems %q matches no row", expr)
	}
	return out, nil
}
