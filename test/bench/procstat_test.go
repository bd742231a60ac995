package bench

import (
	"crypto/sha256"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    int64
		wantErr bool
	}{
		{"plain", "1234 (sidecar) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 8 0 100 0 0", 290, false},
		{"name with spaces and parens", "7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 7, false},
		{"no name", "1234 sidecar S 1", 0, true},
		{"truncated", "1 (x) S 1 2 3", 0, true},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseSchedstat(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"637657869 1369332532 616\n", 637657869, false},
		{"5", 5, false},
		{"", 0, true},
		{"-1 2 3", 0, true},
		{"x 2 3", 0, true},
	}
	for _, tt := range tests {
		got, err := parseSchedstat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"0", []int{0}, false},
		{"0-1", []int{0, 1}, false},
		{"0-2,5,7-8", []int{0, 1, 2, 5, 7, 8}, false},
		{"", nil, true},
		{"3-1", nil, true},
		{"a", nil, true},
		{"0-99999999", nil, true},
	}
	for _, tt := range tests {
		got, err := parseCPUList(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCPUTimeOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux")
	}
	hz := ClockTicks()
	before, err := CPUTime(os.Getpid(), hz)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(nil)
	for range 200_000 { // some CPU work, so the counter can move
		sum = sha256.Sum256(sum[:])
	}
	after, err := CPUTime(os.Getpid(), hz)
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after < before {
		t.Fatalf("CPU time went from %v to %v", before, after)
	}
	cpus, err := AllowedCPUs()
	if err != nil || len(cpus) == 0 {
		t.Fatalf("AllowedCPUs = %v, %v", cpus, err)
	}
}

func TestParseStatusMemory(t *testing.T) {
	const status = "Name:\tsidecar\nVmPeak:\t 1300000 kB\nVmRSS:\t   26316 kB\nRssAnon:\t    5304 kB\nRssFile:\t   21012 kB\nRssShmem:\t       0 kB\n\n"
	got, err := parseStatusMemory([]byte(status))
	if want := (Memory{RSS: 26316 << 10, File: 21012 << 10, Anon: 5304 << 10}); err != nil || got != want {
		t.Errorf("got %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"VmRSS:\t1 kB\nRssAnon:\t1 kB\n", "VmRSS:\t1 MB\nRssAnon:\t1 kB\nRssFile:\t1 kB\n", "VmRSS:\tx kB\nRssAnon:\t1 kB\nRssFile:\t1 kB\n"} {
		if _, err := parseStatusMemory([]byte(bad)); err == nil {
			t.Errorf("parseStatusMemory(%q) accepted", bad)
		}
	}
}

func TestParseIOWchar(t *testing.T) {
	if got, err := parseIOWchar([]byte("rchar: 10\nwchar: 123456\nsyscr: 3\n")); err != nil || got != 123456 {
		t.Errorf("got %d, %v", got, err)
	}
	for _, bad := range []string{"rchar: 10\n", "wchar: -1\n", "wchar: x\n"} {
		if _, err := parseIOWchar([]byte(bad)); err == nil {
			t.Errorf("parseIOWchar(%q) accepted", bad)
		}
	}
}

func TestMemoryAndWritesOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	m, err := ProcMemory(os.Getpid())
	if err != nil || m.RSS <= 0 || m.File+m.Anon > m.RSS {
		t.Fatalf("ProcMemory = %+v, %v", m, err)
	}
	before, err := WrittenBytes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "w")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if after, err := WrittenBytes(os.Getpid()); err != nil || after-before < 4096 {
		t.Fatalf("WrittenBytes after writing 4096 bytes: %d → %d, %v", before, after, err)
	}
}
