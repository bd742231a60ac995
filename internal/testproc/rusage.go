package testproc

import (
	"syscall"
	"testing"
	"time"
)

// RaiseFileLimit lifts this process's soft descriptor limit to the hard one: benchmarks with a thousand mTLS
// connections need a thousand descriptors on each side.
func RaiseFileLimit(tb testing.TB) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		tb.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			tb.Fatal(err)
		}
	}
}

// CPUTime is the user+system CPU time this process has used; unlike wall time, waiting for a CPU does not
// inflate it.
func CPUTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
