package sidecar

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the sidecar's GOGC when neither runtime.gcPercent nor $GOGC sets one. The live heap is a few
// MB, so at Go's 100 the collector runs every few hundred requests; README "Benchmarks" has the CPU and memory
// measured at 100, 200 and 400.
const DefaultGCPercent = 200

// minMemoryLimit is the lowest runtime.memoryLimit: an idle sidecar's heap is about 4 MiB, and below a few times
// that the collector would run almost without pause.
const minMemoryLimit = 16 << 20

// RuntimeConfig tunes the Go runtime's garbage collector for this process. Each field, when set, wins over its
// environment variable; when unset, the environment variable applies as usual (and gcPercent falls back to
// DefaultGCPercent without one). Applied at start only.
type RuntimeConfig struct {
	// GCPercent is GOGC: the heap grows by this percentage of the live heap before the next collection. -1 turns
	// the collector off until the heap reaches memoryLimit, and needs one.
	GCPercent *int `yaml:"gcPercent,omitempty"`
	// MemoryLimit is GOMEMLIMIT, with its syntax (e.g. 64MiB; units B, KiB, MiB, GiB, TiB): a soft limit on the
	// memory the Go runtime holds, past which it collects more often. At least 16MiB.
	MemoryLimit string `yaml:"memoryLimit,omitempty"`
}

// GCSettings is what ApplyRuntime left in force, and where each value came from ("config", "env" or "default").
type GCSettings struct {
	GCPercent       int
	GCPercentFrom   string
	MemoryLimit     int64 // math.MaxInt64: no limit
	MemoryLimitFrom string
}

func (r *RuntimeConfig) validate(v *validator) {
	if p := r.GCPercent; p != nil && *p < -1 {
		v.add("runtime.gcPercent", fmt.Sprintf("%d: want a percentage (0 or more), or -1 (collector off until memoryLimit)", *p))
	}
	if r.MemoryLimit != "" {
		n, err := parseMemoryLimit(r.MemoryLimit)
		switch {
		case err != nil:
			v.add("runtime.memoryLimit", err.Error())
		case n < minMemoryLimit:
			v.add("runtime.memoryLimit", fmt.Sprintf("%q is below the minimum of 16MiB", r.MemoryLimit))
		}
	}
	if p := r.GCPercent; p != nil && *p == -1 && r.MemoryLimit == "" {
		v.add("runtime.gcPercent", "-1 turns the collector off: set runtime.memoryLimit too, or the heap grows without bound")
	}
}

// ApplyRuntime sets this process's GC percentage and memory limit from rc (validated), or from the environment
// (getenv, normally os.Getenv) where rc is silent. The runtime has already read $GOGC and $GOMEMLIMIT at start;
// only the default gcPercent is applied over a process without $GOGC.
func ApplyRuntime(rc RuntimeConfig, getenv func(string) string) GCSettings {
	var s GCSettings
	switch {
	case rc.GCPercent != nil:
		debug.SetGCPercent(*rc.GCPercent)
		s.GCPercent, s.GCPercentFrom = *rc.GCPercent, "config"
	case getenv("GOGC") != "":
		// Reading the value back means setting it: set it to itself.
		cur := debug.SetGCPercent(-1)
		debug.SetGCPercent(cur)
		s.GCPercent, s.GCPercentFrom = cur, "env"
	default:
		debug.SetGCPercent(DefaultGCPercent)
		s.GCPercent, s.GCPercentFrom = DefaultGCPercent, "default"
	}
	if n, err := parseMemoryLimit(rc.MemoryLimit); err == nil && rc.MemoryLimit != "" {
		debug.SetMemoryLimit(n)
		s.MemoryLimit, s.MemoryLimitFrom = n, "config"
	} else {
		s.MemoryLimit, s.MemoryLimitFrom = debug.SetMemoryLimit(-1), "default" // a negative value only reads it
		if getenv("GOMEMLIMIT") != "" {
			s.MemoryLimitFrom = "env"
		}
	}
	return s
}

// parseMemoryLimit reads GOMEMLIMIT's syntax: a non-negative integer with an optional unit B, KiB, MiB, GiB or TiB.
func parseMemoryLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	num, shift := s, uint(0)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size like 64MiB (an integer with an optional unit B, KiB, MiB, GiB or TiB, as GOMEMLIMIT)", s)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n << shift), nil
}
