package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Stats says what Release gave back.
type Stats struct {
	// Mappings is how many read-only mappings of the binary were dropped, Bytes how much of them was resident.
	Mappings int
	Bytes    int64
}

// region is one mapping of /proc/self/smaps: its address range and what Release needs to know about it.
type region struct {
	start, end uintptr
	writable   bool
	dev        string // major:minor, hex, as /proc prints it
	inode      uint64
	rss, anon  int64 // bytes
}

// parseSmaps reads the mappings of a /proc/PID/smaps file.
func parseSmaps(b []byte) ([]region, error) {
	var out []region
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			lo, hi, _ := strings.Cut(f[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			ino, err3 := strconv.ParseUint(f[4], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil || end < start || len(f[1]) != 4 {
				return nil, fmt.Errorf("smaps: bad mapping line %q", line)
			}
			out = append(out, region{start: uintptr(start), end: uintptr(end), writable: f[1][1] == 'w', dev: f[3], inode: ino})
			continue
		}
		if len(out) == 0 || len(f) != 3 || f[2] != "kB" {
			continue
		}
		var dst *int64
		switch f[0] {
		case "Rss:":
			dst = &out[len(out)-1].rss
		case "Anonymous:":
			dst = &out[len(out)-1].anon
		default:
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || kb < 0 {
			return nil, fmt.Errorf("smaps: bad line %q", line)
		}
		*dst = kb << 10
	}
	return out, sc.Err()
}

// droppable picks the mappings of the file dev:inode that are read-only and hold no anonymous page: pages a
// private mapping has copied on write (a debugger's breakpoint, relocations of a position-independent binary)
// exist nowhere else, and dropping them would lose them.
func droppable(rs []region, dev string, inode uint64) []region {
	var out []region
	for _, r := range rs {
		if r.inode == inode && r.dev == dev && !r.writable && r.anon == 0 && r.rss > 0 {
			out = append(out, r)
		}
	}
	return out
}
