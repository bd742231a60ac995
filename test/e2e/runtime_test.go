package e2e

import (
	"fmt"
	"math"
	"net/http"
	"testing"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/sidecar"
)

// TestSidecarGCSettings: the sidecar binary applies runtime.gcPercent and runtime.memoryLimit at start, over
// GOGC and GOMEMLIMIT; without them the environment's apply, and without either the sidecar's default GC
// percentage. Read back from the process's own /metrics (the Go collector's go_gc_gogc_percent and
// go_gc_gomemlimit_bytes).
func TestSidecarGCSettings(t *testing.T) {
	ca := testca.New(t, trustDomain)
	tool := issue(t, ca, toolID)
	const noLimit = math.MaxInt64
	tests := []struct {
		name, yaml string
		env        []string
		pct, limit float64
	}{
		{"default", "", []string{"GOGC=", "GOMEMLIMIT="}, sidecar.DefaultGCPercent, noLimit}, // set empty: as unset
		{"environment", "", []string{"GOGC=50", "GOMEMLIMIT=256MiB"}, 50, 256 << 20},
		{"config over environment", "runtime: {gcPercent: 400, memoryLimit: 64MiB}\n", []string{"GOGC=50", "GOMEMLIMIT=256MiB"}, 400, 64 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			admin := freeAddr(t)
			cfg := tool.identityYAML("example.org", "", nil) + fmt.Sprintf(`ingress:
  listen: %s
  backend: http://127.0.0.1:9
  require: [mtls]
  mtls: {trustDomains: [example.org]}
admin: {listen: %s}
`, freeAddr(t), admin) + tt.yaml
			p := start(t, "sidecar", tt.env, "-config", writeFile(t, t.TempDir(), "ingress.yaml", cfg))
			waitHTTP(t, p, "http://"+admin+"/readyz", http.StatusOK)
			m := scrape(t, "http://"+admin+"/metrics").samples
			if got := m["go_gc_gogc_percent"]; got != tt.pct {
				t.Errorf("go_gc_gogc_percent %v, want %v", got, tt.pct)
			}
			if got := m["go_gc_gomemlimit_bytes"]; got != tt.limit {
				t.Errorf("go_gc_gomemlimit_bytes %v, want %v", got, tt.limit)
			}
		})
	}
}
