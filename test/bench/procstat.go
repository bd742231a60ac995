package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ClockTicks returns the kernel's USER_HZ (`getconf CLK_TCK`), the unit of the CPU times in /proc/PID/stat; 100,
// its value on every common Linux platform, when getconf is missing.
func ClockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && hz > 0 {
			return hz
		}
	}
	return 100
}

// CPUTime returns the CPU time process pid has used so far (all its threads), from /proc. It is the larger of
// utime+stime in /proc/PID/stat — which counts exited threads too but in clock ticks (hz is ClockTicks; 10 ms at
// 100 Hz) — and the nanosecond sum of the run times in /proc/PID/task/*/schedstat, which misses exited threads
// (Go programs rarely end one). Both are lower bounds of the same quantity, so the larger is the better figure.
func CPUTime(pid int, hz int64) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	total := time.Duration(ticks) * time.Second / time.Duration(hz)
	if sum, ok := threadsRunTime(pid); ok && sum > total {
		total = sum
	}
	return total, nil
}

// threadsRunTime sums the first field of /proc/PID/task/*/schedstat (time on CPU, ns). ok is false when the
// kernel keeps no schedstat or a file cannot be parsed.
func threadsRunTime(pid int) (time.Duration, bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var sum time.Duration
	read := 0
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "schedstat"))
		if errors.Is(err, fs.ErrNotExist) {
			continue // the thread ended after ReadDir, or there is no schedstat at all
		}
		if err != nil {
			return 0, false
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, false
		}
		sum += ns
		read++
	}
	return sum, read > 0
}

// parseSchedstat returns the first field of a schedstat line: nanoseconds spent on a CPU.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("empty schedstat")
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, fmt.Errorf("schedstat run time %q is not a non-negative integer", f[0])
	}
	return time.Duration(ns), nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of a /proc/PID/stat line. The command name (field 2) is in
// parentheses and may itself contain spaces and parentheses, so fields are counted after the last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no command name in %q", stat)
	}
	f := strings.Fields(string(stat[end+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("utime %q / stime %q are not integers", f[11], f[12])
	}
	return utime + stime, nil
}

// AllowedCPUs returns the CPUs this process may run on (Cpus_allowed_list in /proc/self/status).
func AllowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Cpus_allowed_list:"); ok {
			return parseCPUList(strings.TrimSpace(v))
		}
	}
	return nil, fmt.Errorf("no Cpus_allowed_list in /proc/self/status")
}

// parseCPUList parses the kernel's CPU list format, e.g. "0-3,8,10-11".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: bad entry %q", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1<<16 {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// Memory is a process's resident memory in bytes: all of it, the file-backed part (the binary's mapped pages,
// other mapped files) and the anonymous part (heap, stacks, runtime metadata).
type Memory struct{ RSS, File, Anon int64 }

// ProcMemory reads VmRSS, RssFile and RssAnon of /proc/PID/status.
func ProcMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	return parseStatusMemory(b)
}

func parseStatusMemory(b []byte) (Memory, error) {
	var m Memory
	fields := map[string]*int64{"VmRSS:": &m.RSS, "RssFile:": &m.File, "RssAnon:": &m.Anon}
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		dst, ok := fields[f[0]]
		if !ok {
			continue
		}
		if len(f) != 3 || f[2] != "kB" {
			return Memory{}, fmt.Errorf("status line %q: want NAME: N kB", sc.Text())
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || kb < 0 {
			return Memory{}, fmt.Errorf("status line %q: %q is not a size", sc.Text(), f[1])
		}
		*dst = kb << 10
		found++
	}
	if found != len(fields) {
		return Memory{}, fmt.Errorf("status: want VmRSS, RssFile and RssAnon, found %d of them", found)
	}
	return m, nil
}

// WrittenBytes returns wchar of /proc/PID/io: the bytes the process has passed to write(2) and its kin, sockets
// included (so TLS records and HTTP/2 frames as sent), whether or not they reached a disk.
func WrittenBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	return parseIOWchar(b)
}

func parseIOWchar(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("io: wchar %q is not a non-negative integer", v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("io: no wchar")
}
