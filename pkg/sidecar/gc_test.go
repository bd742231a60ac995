package sidecar

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

func TestRuntimeConfig(t *testing.T) {
	valid, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(append(valid, "runtime: {gcPercent: 400, memoryLimit: 64MiB}\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Runtime; r.GCPercent == nil || *r.GCPercent != 400 || r.MemoryLimit != "64MiB" {
		t.Errorf("parsed: %+v", r)
	}
	if _, err := Parse(append(valid, "runtime: {gcPercent: -1, memoryLimit: 1GiB}\n"...)); err != nil {
		t.Errorf("collector off with a limit: %v", err)
	}
	tests := []struct {
		name, yaml, field, msg string
	}{
		{"negative percent", "runtime: {gcPercent: -5}\n", "runtime.gcPercent", "want a percentage (0 or more)"},
		{"off without limit", "runtime: {gcPercent: -1}\n", "runtime.gcPercent", "set runtime.memoryLimit too"},
		{"limit without unit syntax", "runtime: {memoryLimit: 64M}\n", "runtime.memoryLimit", `"64M" is not a size`},
		{"limit in Kubernetes syntax", "runtime: {memoryLimit: 64Mi}\n", "runtime.memoryLimit", "is not a size"},
		{"negative limit", "runtime: {memoryLimit: -1MiB}\n", "runtime.memoryLimit", "is not a size"},
		{"tiny limit", "runtime: {memoryLimit: 4MiB}\n", "runtime.memoryLimit", "below the minimum of 16MiB"},
		{"huge limit", "runtime: {memoryLimit: 9000000000TiB}\n", "runtime.memoryLimit", "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantFieldError(t, append(valid, tt.yaml...), tt.field, tt.msg) })
	}
}

func TestParseMemoryLimit(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1234", 1234}, {"512B", 512}, {"64KiB", 64 << 10}, {"64MiB", 64 << 20}, {"2GiB", 2 << 30}, {"1TiB", 1 << 40},
	}
	for _, tt := range tests {
		if got, err := parseMemoryLimit(tt.in); err != nil || got != tt.want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "MiB", "64 MiB", "64mib", "1.5GiB", "+64MiB", "0x40MiB", "off"} {
		if _, err := parseMemoryLimit(bad); err == nil {
			t.Errorf("parseMemoryLimit(%q) accepted", bad)
		}
	}
}

// TestApplyRuntime reads the settings back from the runtime itself. Not parallel: it changes this process's GC.
func TestApplyRuntime(t *testing.T) {
	percent, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(percent); debug.SetMemoryLimit(limit) })
	gcPercent := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }
	pct := func(n int) *int { return &n }
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	tests := []struct {
		name           string
		rc             RuntimeConfig
		env            map[string]string
		runtimePercent int // what the runtime took from $GOGC at start, simulated
		want           GCSettings
	}{
		{"default", RuntimeConfig{}, nil, 100,
			GCSettings{DefaultGCPercent, "default", math.MaxInt64, "default"}},
		{"env GOGC kept", RuntimeConfig{}, map[string]string{"GOGC": "50"}, 50,
			GCSettings{50, "env", math.MaxInt64, "default"}},
		{"config over env", RuntimeConfig{GCPercent: pct(400), MemoryLimit: "64MiB"}, map[string]string{"GOGC": "50", "GOMEMLIMIT": "1GiB"}, 50,
			GCSettings{400, "config", 64 << 20, "config"}},
		{"collector off with a limit", RuntimeConfig{GCPercent: pct(-1), MemoryLimit: "32MiB"}, nil, 100,
			GCSettings{-1, "config", 32 << 20, "config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(tt.runtimePercent)
			debug.SetMemoryLimit(math.MaxInt64)
			got := ApplyRuntime(tt.rc, env(tt.env))
			if got != tt.want {
				t.Errorf("ApplyRuntime = %+v, want %+v", got, tt.want)
			}
			if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != tt.want.GCPercent || l != tt.want.MemoryLimit {
				t.Errorf("the runtime has GC percent %d, memory limit %d; want %d, %d", p, l, tt.want.GCPercent, tt.want.MemoryLimit)
			}
		})
	}
}
