//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// speed is one probe of a core (cmd/speedprobe): one ECDSA P-256 signature and one verification, and the same
// with Ed25519.
type speed struct{ sign, verify, edSign, edVerify time.Duration }

func (s speed) total() time.Duration { return s.sign + s.verify }

// totalFor is one signature and one verification with alg, the workload key algorithm of a row ("" is ES256).
func (s speed) totalFor(alg string) time.Duration {
	if alg == "EdDSA" {
		return s.edSign + s.edVerify
	}
	return s.total()
}

// probeSpeed runs cmd/speedprobe on the proxies' core (unpinned when nothing is pinned).
func probeSpeed(t *testing.T, e *env) speed {
	t.Helper()
	name, args := filepath.Join(e.bin, "speedprobe"), []string(nil)
	if e.pin.sut >= 0 {
		name, args = "taskset", []string{"-c", strconv.Itoa(e.pin.sut), name}
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(cmd.Environ(), "GOMAXPROCS=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("speedprobe: %v", err)
	}
	var sign, verify, edSign, edVerify int64
	if _, err := fmt.Sscanf(string(out), "sign %d verify %d ed25519-sign %d ed25519-verify %d", &sign, &verify, &edSign, &edVerify); err != nil {
		t.Fatalf("speedprobe answered %q: %v", out, err)
	}
	return speed{sign: time.Duration(sign), verify: time.Duration(verify), edSign: time.Duration(edSign), edVerify: time.Duration(edVerify)}
}

// medianSpeed is the per-field median of the probes of fs.
func medianSpeed(fs []*figures) speed {
	var signs, verifies, edSigns, edVerifies []time.Duration
	for _, f := range fs {
		signs, verifies = append(signs, f.probe.sign), append(verifies, f.probe.verify)
		edSigns, edVerifies = append(edSigns, f.probe.edSign), append(edVerifies, f.probe.edVerify)
	}
	if len(signs) == 0 {
		return speed{}
	}
	return speed{sign: median(signs), verify: median(verifies), edSign: median(edSigns), edVerify: median(edVerifies)}
}

// allocs is what one sidecar allocated per request, from its Go runtime's own counters (runtime/metrics behind
// go_memstats_alloc_bytes_total and go_memstats_mallocs_total on its /metrics).
// gcs is garbage collections (go_gc_duration_seconds_count), per request like the others.
type allocs struct{ bytes, objects, gcs float64 }

// allocCounter is one sidecar's counters at the start of a phase, and what reading them once costs.
type allocCounter struct {
	p           *proc
	start, read allocs
}

// startAllocCount reads the counters of every sidecar in sut twice in a row: the second reading is the start, the
// difference is what one reading allocates, taken off again at the end.
func startAllocCount(t *testing.T, sut []*proc) []allocCounter {
	t.Helper()
	var cs []allocCounter
	for _, p := range sut {
		if p.metrics == "" {
			continue
		}
		a := readAllocs(t, p)
		b := readAllocs(t, p)
		cs = append(cs, allocCounter{p: p, start: b, read: allocs{b.bytes - a.bytes, b.objects - a.objects, 0}})
	}
	return cs
}

// stopAllocCount returns what each sidecar allocated per request since startAllocCount, over n requests.
func stopAllocCount(t *testing.T, cs []allocCounter, n int) []allocs {
	t.Helper()
	if len(cs) == 0 || n == 0 {
		return nil
	}
	out := make([]allocs, len(cs))
	for i, c := range cs {
		end := readAllocs(t, c.p)
		out[i] = allocs{
			bytes:   (end.bytes - c.start.bytes - c.read.bytes) / float64(n),
			objects: (end.objects - c.start.objects - c.read.objects) / float64(n),
			gcs:     (end.gcs - c.start.gcs) / float64(n),
		}
	}
	return out
}

func readAllocs(t *testing.T, p *proc) allocs {
	t.Helper()
	resp, err := http.Get(p.metrics)
	if err != nil {
		t.Fatalf("%s metrics: %v", p.name, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("%s metrics: %v", p.name, err)
	}
	a := allocs{bytes: math.NaN(), objects: math.NaN(), gcs: math.NaN()}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "go_memstats_alloc_bytes_total":
			a.bytes, err = strconv.ParseFloat(val, 64)
		case "go_memstats_mallocs_total":
			a.objects, err = strconv.ParseFloat(val, 64)
		case "go_gc_duration_seconds_count":
			a.gcs, err = strconv.ParseFloat(val, 64)
		}
		if err != nil {
			t.Fatalf("%s metrics: %s: %v", p.name, name, err)
		}
	}
	if math.IsNaN(a.bytes) || math.IsNaN(a.objects) || math.IsNaN(a.gcs) {
		t.Fatalf("%s metrics: no go_memstats_alloc_bytes_total, go_memstats_mallocs_total or go_gc_duration_seconds_count", p.name)
	}
	return a
}

// pairRun is everything TestSidecarPair measured.
type pairRun struct {
	rounds map[string][]*figures // by system, by round; nil where the measurement failed
	floors []cryptoFloor         // in-process, on the load generator's core, one per round (the go-jose reference)
	// speed is the median probe of the first pass, which outliers are judged by; floor the median of all kept
	// measurements, the unit of the ÷crypto columns.
	speed, floor       speed
	repeated, stillOff int
}

func (r *pairRun) all() []*figures {
	var out []*figures
	for _, fs := range r.rounds {
		for _, f := range fs {
			if f != nil {
				out = append(out, f)
			}
		}
	}
	return out
}

// offBy is how far f's probe of the verification is from the run's median, relative to it.
func (r *pairRun) offBy(f *figures) float64 {
	return math.Abs(float64(f.probe.verify-r.speed.verify)) / float64(r.speed.verify)
}

// outlier reports whether f's probe is further than -probe.tolerance from the run's median.
func (r *pairRun) outlier(f *figures) bool { return r.offBy(f) > *probeTolerance }

// corrected returns f with its CPU figures and throughput brought to the run's median core speed: a measurement
// taken while the probe ran 20% slow has its CPU per request divided by 1.2 and its throughput multiplied by it.
func (r *pairRun) corrected(f *figures) figures {
	c := *f
	if f.probe.verify <= 0 || r.floor.verify <= 0 {
		return c
	}
	k := float64(f.probe.verify) / float64(r.floor.verify)
	c.cpuPerReq = time.Duration(float64(f.cpuPerReq) / k)
	c.cpuPerReqMax = time.Duration(float64(f.cpuPerReqMax) / k)
	c.rps = f.rps * k
	return c
}
