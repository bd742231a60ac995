package memtrim

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReleaseDropsBinaryPages: after Release, this test binary has fewer of its own pages resident than before,
// and keeps working (the pages come back from the page cache as they are used).
func TestReleaseDropsBinaryPages(t *testing.T) {
	before := rssFile(t)
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	if st.Mappings == 0 || st.Bytes <= 0 {
		t.Fatalf("Release dropped nothing: %+v", st)
	}
	if after >= before {
		t.Errorf("RssFile %d kB before Release, %d kB after", before, after)
	}
	t.Logf("Release: %+v; RssFile %d → %d kB", st, before, after)
	// Code that had not run since start, and data it reads, still work.
	if got := strings.Repeat(strconv.Quote("x\ty"), 2); got != `"x\ty""x\ty"` {
		t.Errorf("after Release: %s", got)
	}
}

func rssFile(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(l, []byte("RssFile:")); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
