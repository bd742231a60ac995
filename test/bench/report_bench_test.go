//go:build bench

package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// stat is a figure over the rounds: its median and its spread (lowest and highest round).
type stat struct {
	med, lo, hi float64
	n           int
}

func statOf(xs []float64) stat {
	if len(xs) == 0 {
		return stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return stat{med: med, lo: s[0], hi: s[n-1], n: n}
}

// withSpread formats a stat as "median (lowest–highest)".
func (s stat) withSpread(f func(float64) string) string {
	if s.n == 0 {
		return "-"
	}
	if s.n == 1 {
		return f(s.med)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.med), f(s.lo), f(s.hi))
}

func fx(v float64) string   { return fmt.Sprintf("%.2fx", v) }
func fms(v float64) string  { return ms(time.Duration(v)) }
func fus(v float64) string  { return us(time.Duration(v)) }
func fnum(v float64) string { return fmt.Sprintf("%.0f", v) }

// check is one target on one row.
type check struct {
	row, name, limit string
	v                stat
	ok               bool
	format           func(float64) string
	rounds           []float64
}

// report prints the tables and the target checks, and returns how many checks failed. CPU and throughput figures
// are speed-corrected (pairRun.corrected); latency and allocation are not, being no measure of the core's speed.
func report(w io.Writer, e *env, systems []system, run *pairRun) int {
	var joses []time.Duration
	var inproc []time.Duration
	for _, f := range run.floors {
		joses, inproc = append(joses, f.jose), append(inproc, f.total())
	}
	fmt.Fprintf(w, "\nagentauth sidecar-pair benchmark — %s, %s %s/%s, %d CPUs (%s)\n",
		time.Now().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel())
	fmt.Fprintln(w, e.pin.note)
	fmt.Fprintln(w, e.loadNote)
	fmt.Fprintf(w, "each system started fresh on 127.0.0.1 in each of %d rounds, in ABBA order (forward, backward, ...); figures are medians over the rounds, ratios taken round by round, with (lowest–highest) round; the agent POSTs an MCP tools/call (%d bytes) as HTTP_PROXY-style absolute-form requests on keep-alive connections\n",
		*numRounds, len(mcpBody))
	fmt.Fprintf(w, "per measurement: %s warm-up + %s open loop at %d req/s (latency, CPU/req, allocation), %s + %s closed loop on %d connections (max req/s), %s + %s open loop at half that max req/s (latency)\n",
		*loadWarmup, *loadDuration, *loadRate, *loadWarmup, *loadDuration, *loadConns, *loadWarmup, *halfDuration)
	fmt.Fprintln(w, "open loop: evenly spaced arrivals on an absolute schedule, each request in its own goroutine whatever the earlier ones do, so a stall of the pair delays every request due meanwhile; latency runs from the hand-off to the HTTP client, and the generator's own lateness at the hand-off is shown apart (lag)")
	fmt.Fprintln(w, "hops: TLS ones are HTTP/2 by ALPN, plain ones HTTP/1.1; the bare TLS pair and sidecar mtls use mutual TLS, sidecar wpt/httpsig (TLS) server-authenticated TLS (the proof authenticates the agent)")
	fmt.Fprintln(w, "CPU: the two proxy processes' CPU time from /proc (task schedstat ns, or stat utime+stime if larger); the tool and the load generator are not counted")
	all := run.all()
	var probes []float64
	for _, f := range all {
		probes = append(probes, float64(f.probe.verify))
	}
	ps := statOf(probes)
	fmt.Fprintf(w, "core speed: cmd/speedprobe on the proxies' core before and after each measurement (ES256 = ECDSA P-256 over SHA-256, 330-byte input): verify %s, over the run %s; %d measurement(s) repeated for a probe more than %.0f%% off the median, %d still off after %d repeat(s)\n",
		us(run.floor.verify), ps.withSpread(fus), run.repeated, 100**probeTolerance, run.stillOff, *probeRetries)
	fmt.Fprintf(w, "crypto floor (÷crypto unit), from those probes: sign %s + verify %s = %s; CPU/req and max req/s (marked *) are corrected to that median speed, each measurement by its own probe\n",
		us(run.floor.sign), us(run.floor.verify), us(run.floor.total()))
	fmt.Fprintf(w, "rows with Ed25519 workload keys (-ed25519) use their own floor, from the same probes: Ed25519 sign %s + verify %s = %s\n",
		us(run.floor.edSign), us(run.floor.edVerify), us(run.floor.totalFor("EdDSA")))
	if len(joses) > 0 {
		fmt.Fprintf(w, "the same through go-jose, the project's JOSE library (sign, serialize, parse, verify a WPT-sized JWS, in the load generator): %.2fx the floor measured beside it\n",
			float64(median(joses))/float64(median(inproc)))
	}
	fmt.Fprintln(w, "the machine is shared and noisy: compare ratios within this run, not absolute figures across runs")
	fmt.Fprintln(w)

	cor := func(name string, i int) (figures, bool) {
		fs := run.rounds[name]
		if i >= len(fs) || fs[i] == nil {
			return figures{}, false
		}
		return run.corrected(fs[i]), true
	}
	over := func(fn func(i int) (float64, bool)) ([]float64, stat) {
		var xs []float64
		for i := range *numRounds {
			if v, ok := fn(i); ok {
				xs = append(xs, v)
			}
		}
		return xs, statOf(xs)
	}
	field := func(name string, get func(f figures) float64) stat {
		_, s := over(func(i int) (float64, bool) {
			f, ok := cor(name, i)
			return get(f), ok
		})
		return s
	}
	vs := func(name, other string, get func(a, b figures) float64) ([]float64, stat) {
		return over(func(i int) (float64, bool) {
			a, ok1 := cor(name, i)
			b, ok2 := cor(other, i)
			return get(a, b), ok1 && ok2 && other != ""
		})
	}
	// floor is a row's ÷crypto unit: one sign + one verify with its workload key algorithm.
	floor := func(s system) float64 { return float64(run.floor.totalFor(s.alg)) }
	direct := systems[0].name

	// pooled merges a row's latencies of every round it completed, for percentiles over all of them.
	pooled := func(name string, get func(f figures) []time.Duration) []time.Duration {
		var sets [][]time.Duration
		for _, f := range run.rounds[name] {
			if f != nil {
				sets = append(sets, get(*f))
			}
		}
		return Pool(sets...)
	}
	latOf := func(f figures) []time.Duration { return f.lat }
	halfOf := func(f figures) []time.Duration { return f.latHalf }
	directPooled := pooled(direct, latOf)
	// addedHalf is a row's p-th percentile at half capacity over all rounds pooled, minus the direct call's at the
	// fixed rate pooled the same way: with the rounds' own figures as its spread.
	addedHalf := func(name string, p float64, perRound func(a, d figures) float64) ([]float64, stat) {
		xs, v := vs(name, direct, perRound)
		if v.n > 0 {
			v.med = float64(Percentile(pooled(name, halfOf), p) - Percentile(directPooled, p))
		}
		return xs, v
	}

	fmt.Fprintln(w, "latency (not corrected): at the fixed rate, and at half the row's own max req/s; + is added to the direct call at the fixed rate; fixed-rate columns are medians of the rounds' figures, half-capacity ones are over every round's requests pooled (n of them), and lag is the load generator's p99 lateness there")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tp50\tp99\t+p50\t+p99\thalf req/s\tn\tp50\tp99\t+p50\t+p99\tlag\t")
	for _, s := range systems {
		if len(run.rounds[s.name]) == 0 || field(s.name, func(f figures) float64 { return 1 }).n == 0 {
			fmt.Fprintf(tw, "%s\tFAILED in every round (see the test log)\t\n", s.name)
			continue
		}
		half := pooled(s.name, halfOf)
		cols := []string{s.name,
			fms(field(s.name, func(f figures) float64 { return float64(f.p50) }).med),
			fms(field(s.name, func(f figures) float64 { return float64(f.p99) }).med), "-", "-",
			fnum(field(s.name, func(f figures) float64 { return float64(f.halfRate) }).med),
			fnum(float64(len(half))), ms(Percentile(half, 50)), ms(Percentile(half, 99)), "-", "-",
			fms(field(s.name, func(f figures) float64 { return float64(f.lagHalf) }).med)}
		if s.name != direct {
			_, a := vs(s.name, direct, func(a, d figures) float64 { return float64(a.p50 - d.p50) })
			_, b := vs(s.name, direct, func(a, d figures) float64 { return float64(a.p99 - d.p99) })
			_, c := addedHalf(s.name, 50, func(a, d figures) float64 { return float64(a.p50h - d.p50) })
			_, d := addedHalf(s.name, 99, func(a, d figures) float64 { return float64(a.p99h - d.p99) })
			cols[3], cols[4], cols[9], cols[10] = fms(a.med), fms(b.med), fms(c.med), fms(d.med)
		} else {
			cols[5], cols[6], cols[7], cols[8], cols[11] = "-", "-", "-", "-", "-"
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	tw.Flush()

	fmt.Fprintln(w, "\nCPU and throughput (speed-corrected *): x base = max req/s against the row's bare pair; CPU−base = CPU/req beyond it at the fixed rate, ÷crypto in units of the floor; proofs alone = CPU/req beyond the sidecar pair in mtls mode, ÷ the floor")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tmax req/s*\tx base\tCPU/req*\tCPU/req@max*\tbusy@max\tCPU−base\t÷crypto\tproofs alone ÷crypto\t")
	for _, s := range systems {
		if s.name == direct || field(s.name, func(f figures) float64 { return 1 }).n == 0 {
			continue
		}
		cols := []string{s.name,
			fnum(field(s.name, func(f figures) float64 { return f.rps }).med), "-",
			fus(field(s.name, func(f figures) float64 { return float64(f.cpuPerReq) }).med),
			fus(field(s.name, func(f figures) float64 { return float64(f.cpuPerReqMax) }).med),
			fmt.Sprintf("%.0f%%", 100*field(s.name, func(f figures) float64 { return f.busyMax }).med), "-", "-", "-"}
		if s.baseline != "" {
			_, x := vs(s.name, s.baseline, func(a, b figures) float64 { return a.rps / b.rps })
			_, c := vs(s.name, s.baseline, func(a, b figures) float64 { return float64(a.cpuPerReq - b.cpuPerReq) })
			cols[2], cols[6], cols[7] = x.withSpread(fx), fus(c.med), statDiv(c, floor(s)).withSpread(fx)
		}
		if s.proofsVs != "" {
			_, p := vs(s.name, s.proofsVs, func(a, b figures) float64 { return float64(a.cpuPerReq-b.cpuPerReq) / floor(s) })
			cols[8] = p.withSpread(fx)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	tw.Flush()

	fmt.Fprintln(w, "\nallocation per request at the fixed rate, from each sidecar's Go runtime counters (go_memstats_alloc_bytes_total, go_memstats_mallocs_total); x mtls = both sidecars together against the pair in mtls mode; GCs = both sidecars' collections per 1,000 requests (go_gc_duration_seconds_count)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tegress B\tegress objects\tingress B\tingress objects\tB x mtls\tobjects x mtls\tGCs\t")
	side := func(k int, get func(a allocs) float64) func(f figures) float64 {
		return func(f figures) float64 {
			if k >= len(f.alloc) {
				return 0
			}
			return get(f.alloc[k])
		}
	}
	bytesOf := func(a allocs) float64 { return a.bytes }
	objsOf := func(a allocs) float64 { return a.objects }
	gcsOf := func(a allocs) float64 { return a.gcs }
	sum := func(f figures, get func(a allocs) float64) float64 {
		var t float64
		for _, a := range f.alloc {
			t += get(a)
		}
		return t
	}
	const mtls = "sidecar mtls"
	for _, s := range systems {
		if s.target == noTarget || field(s.name, func(f figures) float64 { return 1 }).n == 0 {
			continue
		}
		cols := []string{s.name,
			fnum(field(s.name, side(0, bytesOf)).med), fmt.Sprintf("%.1f", field(s.name, side(0, objsOf)).med),
			fnum(field(s.name, side(1, bytesOf)).med), fmt.Sprintf("%.1f", field(s.name, side(1, objsOf)).med), "-", "-",
			fmt.Sprintf("%.1f", 1000*field(s.name, func(f figures) float64 { return sum(f, gcsOf) }).med)}
		if s.name != mtls {
			_, b := vs(s.name, mtls, func(a, m figures) float64 { return sum(a, bytesOf) / sum(m, bytesOf) })
			_, o := vs(s.name, mtls, func(a, m figures) float64 { return sum(a, objsOf) / sum(m, objsOf) })
			cols[5], cols[6] = b.withSpread(fx), o.withSpread(fx)
		}
		fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t")
	}
	tw.Flush()
	for _, s := range systems {
		if s.note != "" {
			fmt.Fprintln(w, s.note)
		}
	}

	// Targets, on the medians of the per-round values.
	var checks []check
	add := func(row, name, limit string, xs []float64, v stat, ok func(float64) bool, format func(float64) string) {
		if v.n == 0 {
			return
		}
		checks = append(checks, check{row: row, name: name, limit: limit, v: v, ok: ok(v.med), format: format, rounds: xs})
	}
	for _, s := range systems {
		if s.target == noTarget {
			continue
		}
		xs, v := vs(s.name, direct, func(a, d figures) float64 { return float64(a.p50 - d.p50) })
		add(s.name, "issue 4: added p50", "< "+ms(maxAddedP50), xs, v, func(x float64) bool { return x < float64(maxAddedP50) }, fms)
		xs, v = vs(s.name, direct, func(a, d figures) float64 { return float64(a.p99 - d.p99) })
		add(s.name, "issue 4: added p99", "< "+ms(maxAddedP99), xs, v, func(x float64) bool { return x < float64(maxAddedP99) }, fms)
		switch s.target {
		case tputTarget:
			xs, v = vs(s.name, s.baseline, func(a, b figures) float64 { return a.rps / b.rps })
			add(s.name, "issue 4: max req/s vs bare pair", fmt.Sprintf(">= %.1fx", minTputVsBare), xs, v, func(x float64) bool { return x >= minTputVsBare }, fx)
		case cryptoTarget:
			xs, v = vs(s.name, s.baseline, func(a, b figures) float64 { return float64(a.cpuPerReq-b.cpuPerReq) / floor(s) })
			add(s.name, "issue 4: CPU beyond bare pair ÷ crypto", fmt.Sprintf("<= %.1fx", maxCPUOverFloor), xs, v, func(x float64) bool { return x <= maxCPUOverFloor }, fx)
		}
		// Over every round's requests pooled (spread and rounds: each round's own).
		xs, v = addedHalf(s.name, 50, func(a, d figures) float64 { return float64(a.p50h - d.p50) })
		add(s.name, "issue 19: added p50 at half capacity", "< "+ms(maxAddedP50Half), xs, v, func(x float64) bool { return x < float64(maxAddedP50Half) }, fms)
		xs, v = addedHalf(s.name, 99, func(a, d figures) float64 { return float64(a.p99h - d.p99) })
		add(s.name, "issue 19: added p99 at half capacity", "< "+ms(maxAddedP99Half), xs, v, func(x float64) bool { return x < float64(maxAddedP99Half) }, fms)
		if s.proofsVs != "" {
			xs, v = vs(s.name, s.proofsVs, func(a, b figures) float64 { return float64(a.cpuPerReq-b.cpuPerReq) / floor(s) })
			add(s.name, "issue 19: proofs alone ÷ crypto", fmt.Sprintf("<= %.1fx", maxProofsOverFloor), xs, v, func(x float64) bool { return x <= maxProofsOverFloor }, fx)
			xs, v = vs(s.name, s.proofsVs, func(a, m figures) float64 { return sum(a, bytesOf) / sum(m, bytesOf) })
			add(s.name, "issue 19: allocated bytes vs mtls", fmt.Sprintf("<= %.1fx", maxAllocVsMTLS), xs, v, func(x float64) bool { return x <= maxAllocVsMTLS }, fx)
		}
	}
	fmt.Fprintln(w, "\naudit (issue 18), for reference: against the same pair with audit off (target: batched >= 0.95x of off)")
	for _, s := range systems {
		if s.auditVs == "" || field(s.name, func(f figures) float64 { return 1 }).n == 0 {
			continue
		}
		_, x := vs(s.name, s.auditVs, func(a, off figures) float64 { return a.rps / off.rps })
		_, p99 := vs(s.name, s.auditVs, func(a, off figures) float64 { return float64(a.p99 - off.p99) })
		_, cpu := vs(s.name, s.auditVs, func(a, off figures) float64 { return float64(a.cpuPerReq - off.cpuPerReq) })
		fmt.Fprintf(w, "  %-28s max req/s* %s of off; p99 %s vs off; CPU/req* %s vs off\n", s.name, x.withSpread(fx),
			p99.withSpread(fms), cpu.withSpread(fus))
	}
	variants(w, systems, field, vs, func(name string) time.Duration { return Percentile(pooled(name, halfOf), 99) })
	fmt.Fprintln(w, "\ntargets, on the medians (half-capacity latency: over all rounds' requests pooled; spread: lowest–highest round), then each round's own value:")
	missed := 0
	for _, c := range checks {
		mark := "met   "
		if !c.ok {
			mark = "MISSED"
			missed++
		}
		var rs []string
		for _, x := range c.rounds {
			rs = append(rs, c.format(x))
		}
		fmt.Fprintf(w, "  %s  %-24s %-38s %s (%s)  rounds: %s\n", mark, c.row, c.name, c.v.withSpread(c.format), c.limit, strings.Join(rs, " "))
	}
	return missed
}

// statDiv divides every figure of s by d.
func statDiv(s stat, d float64) stat {
	return stat{med: s.med / d, lo: s.lo / d, hi: s.hi / d, n: s.n}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "CPU model unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "CPU model unknown"
}

// variants prints the rows that vary one setting of another row (issue 19: GC percentage, HPACK table size) against
// that row, round by round: CPU, throughput, resident memory at the end of the closed loop, and bytes written per
// request (wchar: on the egress, the requests' TLS records to the ingress and the answers to the agent).
func variants(w io.Writer, systems []system, field func(string, func(figures) float64) stat,
	vs func(string, string, func(a, b figures) float64) ([]float64, stat), p99Half func(name string) time.Duration) {
	var rows []system
	for _, s := range systems {
		if s.variantOf != "" && field(s.name, func(f figures) float64 { return 1 }).n > 0 {
			rows = append(rows, s)
		}
	}
	if len(rows) == 0 {
		return
	}
	mem := func(k int, get func(m Memory) int64) func(f figures) float64 {
		return func(f figures) float64 {
			if k >= len(f.mem) {
				return 0
			}
			return float64(get(f.mem[k]))
		}
	}
	rss := func(m Memory) int64 { return m.RSS }
	wrote := func(k int) func(f figures) float64 {
		return func(f figures) float64 {
			if k >= len(f.wrote) {
				return 0
			}
			return f.wrote[k]
		}
	}
	fmb := func(v float64) string { return fmt.Sprintf("%.1f", v/(1<<20)) }
	gcs := func(f figures) float64 {
		var n float64
		for _, a := range f.alloc {
			n += a.gcs
		}
		return 1000 * n
	}
	fgc := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	fmt.Fprintln(w, "\nvariants (issue 19), against the row named, same round (speed-corrected *): RSS in MiB at the end of the closed loop; GCs = both sidecars' collections per 1,000 requests and B written = wchar per request, at the fixed rate; p99 at half capacity over every round's requests pooled, and its difference to the row named")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tagainst\tCPU/req* x\tCPU/req@max* x\tmax req/s* x\tegress RSS\tingress RSS\tRSS Δ\tGCs\tx\tegress B written\tΔ\tingress B written\tΔ\tp99 half\tΔ\t")
	for _, s := range rows {
		_, cpu := vs(s.name, s.variantOf, func(a, b figures) float64 { return float64(a.cpuPerReq) / float64(b.cpuPerReq) })
		_, cpuMax := vs(s.name, s.variantOf, func(a, b figures) float64 { return float64(a.cpuPerReqMax) / float64(b.cpuPerReqMax) })
		_, tput := vs(s.name, s.variantOf, func(a, b figures) float64 { return a.rps / b.rps })
		_, dRSS := vs(s.name, s.variantOf, func(a, b figures) float64 {
			return mem(0, rss)(a) + mem(1, rss)(a) - mem(0, rss)(b) - mem(1, rss)(b)
		})
		_, gcx := vs(s.name, s.variantOf, func(a, b figures) float64 { return gcs(a) / gcs(b) })
		_, dEg := vs(s.name, s.variantOf, func(a, b figures) float64 { return wrote(0)(a) - wrote(0)(b) })
		_, dIn := vs(s.name, s.variantOf, func(a, b figures) float64 { return wrote(1)(a) - wrote(1)(b) })
		fmt.Fprintln(tw, strings.Join([]string{s.name, s.variantOf, cpu.withSpread(fx), cpuMax.withSpread(fx), tput.withSpread(fx),
			fmb(field(s.name, mem(0, rss)).med), fmb(field(s.name, mem(1, rss)).med), dRSS.withSpread(fmb),
			fgc(field(s.name, gcs).med), gcx.withSpread(fx), fnum(field(s.name, wrote(0)).med), dEg.withSpread(fnum), fnum(field(s.name, wrote(1)).med), dIn.withSpread(fnum),
			ms(p99Half(s.name)), ms(p99Half(s.name) - p99Half(s.variantOf))}, "\t")+"\t")
	}
	tw.Flush()
}
