//go:build !linux

package wpt

import "time"

// threadCPU falls back to the wall clock where no per-thread CPU clock is read.
func threadCPU() time.Duration { return wallClock() }
