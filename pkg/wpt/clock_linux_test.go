package wpt

import (
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling OS thread has used (CLOCK_THREAD_CPUTIME_ID, the scheduler's nanosecond run
// time). A benchmark that locks its goroutine to its thread times its own work with it, not the time other
// processes held the core.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return wallClock()
	}
	return time.Duration(ts.Nano())
}
