package memtrim

import (
	"testing"
)

const smaps = `00400000-00e82000 r-xp 00000000 fe:00 1234                               /bin/sidecar
Size:              10760 kB
Rss:               10312 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
00e82000-01b0a000 r--p 00a82000 fe:00 1234                               /bin/sidecar
Rss:               10324 kB
Anonymous:             4 kB
01b0a000-01b93000 rw-p 0170a000 fe:00 1234                               /bin/sidecar
Rss:                 548 kB
Anonymous:           120 kB
01b93000-01ba0000 r--p 00000000 fe:00 99                                 /lib/other.so
Rss:                  12 kB
Anonymous:             0 kB
02000000-02100000 r--p 00000000 fe:01 1234                               /other/fs/same-inode
Rss:                  12 kB
Anonymous:             0 kB
c000000000-c000400000 rw-p 00000000 00:00 0
Rss:                3680 kB
Anonymous:          3680 kB
7ffd1000-7ffd2000 r--p 00000000 fe:00 1234                               /bin/sidecar
Rss:                   0 kB
Anonymous:             0 kB
`

func TestDroppable(t *testing.T) {
	rs, err := parseSmaps([]byte(smaps))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 7 {
		t.Fatalf("parsed %d mappings, want 7: %+v", len(rs), rs)
	}
	if r := rs[0]; r.start != 0x400000 || r.end != 0xe82000 || r.writable || r.rss != 10312<<10 || r.anon != 0 || r.inode != 1234 || r.dev != "fe:00" {
		t.Errorf("first mapping: %+v", r)
	}
	// Only the text: the read-only data holds a copied-on-write page, .data is writable, the rest are other files
	// (another device with the same inode number too) or not resident.
	got := droppable(rs, "fe:00", 1234)
	if len(got) != 1 || got[0].start != 0x400000 {
		t.Errorf("droppable = %+v, want the text mapping alone", got)
	}
}

func TestParseSmapsRefusesGarbage(t *testing.T) {
	for _, bad := range []string{
		"zz-01 r-xp 00000000 fe:00 1 /x\n",
		"0400-0300 r-xp 00000000 fe:00 1 /x\n",
		"0300-0400 r-xp 00000000 fe:00 inode /x\n",
		"0300-0400 r-xp 00000000 fe:00 1 /x\nRss: -4 kB\n",
	} {
		if _, err := parseSmaps([]byte(bad)); err == nil {
			t.Errorf("parseSmaps(%q) accepted", bad)
		}
	}
}
