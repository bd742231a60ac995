//go:build bench

package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"
)

// startProfiles starts a profile of every sidecar in sut over the next d, when -profile.dir is set,
// and returns a function that waits for them and writes each to the directory as <test>-<sidecar>.<kind>.pprof
// (.trace for a trace), with the number of requests the phase completed in <test>.<kind>.requests (to read the
// profiles per request). kind is a net/http/pprof profile taken over a duration: "profile" (CPU), "allocs" (what
// was allocated meanwhile, a delta) or "trace" (runtime/trace: GC, scheduling latency). The profile is taken by
// the sidecar itself (/debug/pprof/<kind> on its admin listener), so it sees the sidecar only; this process just
// waits for the answer.
func startProfiles(t *testing.T, sut []*proc, test, kind string, d time.Duration) (wait func(requests int)) {
	t.Helper()
	if *profileDir == "" || !slices.ContainsFunc(sut, func(p *proc) bool { return p.admin != "" }) {
		return func(int) {}
	}
	if err := os.MkdirAll(*profileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secs := max(1, int(d.Seconds()))
	base := regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(test, "_")
	var wg sync.WaitGroup
	errs := make([]error, len(sut))
	for i, p := range sut {
		if p.admin == "" {
			continue
		}
		wg.Go(func() {
			ext := ".pprof"
			if kind == "trace" {
				ext = ".trace"
			}
			errs[i] = fetchProfile(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", p.admin, kind, secs),
				filepath.Join(*profileDir, base+"-"+p.name+"."+kind+ext))
		})
	}
	return func(requests int) {
		wg.Wait()
		if err := os.WriteFile(filepath.Join(*profileDir, base+"."+kind+".requests"), fmt.Appendf(nil, "%d\n", requests), 0o644); err != nil {
			t.Error(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s: %s profile: %v", sut[i].name, kind, err)
			}
		}
	}
}

func fetchProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
