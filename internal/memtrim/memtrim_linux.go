package memtrim

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Release returns the heap's free pages to the system and drops this process's mappings of its binary's read-only
// pages (see the package comment). Call it once, when start-up is over; it is safe at any time, only slower for
// the requests that map pages back.
func Release() (Stats, error) {
	debug.FreeOSMemory()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return Stats{}, fmt.Errorf("memtrim: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return Stats{}, fmt.Errorf("memtrim: %w", err)
	}
	rs, err := parseSmaps(smaps)
	if err != nil {
		return Stats{}, fmt.Errorf("memtrim: %w", err)
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	var s Stats
	for _, r := range droppable(rs, dev, st.Ino) {
		// MADV_DONTNEED on a private file mapping drops this process's page table entries only: the page cache
		// keeps the pages, and a later access maps them back from it.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return s, fmt.Errorf("memtrim: madvise %#x-%#x: %w", r.start, r.end, errno)
		}
		s.Mappings++
		s.Bytes += r.rss
	}
	return s, nil
}

// resident is the process's resident memory in bytes (/proc/self/statm), 0 if it cannot be read.
func resident() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
