//go:build bench

package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
)

// startProfiles starts a CPU profile of every sidecar in sut over the next -load.duration, when -profile.dir is
// set, and returns a function that waits for them and writes each to the directory as <test>-<sidecar>.pprof,
// with the number of requests the phase completed in <test>.requests (to read the profiles per request). The
// profile is taken by the sidecar itself (/debug/pprof/profile on its admin listener), so it sees the sidecar's
// CPU only; this process just waits for the answer.
func startProfiles(t *testing.T, sut []*proc, test string) (wait func(requests int)) {
	t.Helper()
	if *profileDir == "" {
		return func(int) {}
	}
	if err := os.MkdirAll(*profileDir, 0o755); err != nil {
		t.Fatal(err)
	}
	secs := max(1, int(loadDuration.Seconds()))
	base := regexp.MustCompile(`[^A-Za-z0-9.-]+`).ReplaceAllString(test, "_")
	var wg sync.WaitGroup
	errs := make([]error, len(sut))
	for i, p := range sut {
		if p.admin == "" {
			continue
		}
		wg.Go(func() {
			errs[i] = fetchProfile(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", p.admin, secs),
				filepath.Join(*profileDir, base+"-"+p.name+".pprof"))
		})
	}
	return func(requests int) {
		wg.Wait()
		if err := os.WriteFile(filepath.Join(*profileDir, base+".requests"), fmt.Appendf(nil, "%d\n", requests), 0o644); err != nil {
			t.Error(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s: CPU profile: %v", sut[i].name, err)
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
