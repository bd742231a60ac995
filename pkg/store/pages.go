package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// checkPages reads the B+tree of every bucket from the file itself (not through bbolt's memory map) and fails if
// a page lies beyond the file or the high-water mark, has the wrong type, names another id, is reached twice
// (a cycle), or holds an element outside its bounds. bbolt's own traversals (cursors, Tx.Check) trust all of
// that: on a cycle they loop until the process runs out of memory or stack, which no recover can catch. After
// this check they are safe to run, and find the rest (key order, freelist accounting).
//
// The layout read here is bbolt's on-disk format (internal/common: page.go, meta.go, bucket.go), in the byte
// order of the machine that wrote it, which is this one: bbolt files are not portable across byte orders.
func checkPages(f io.ReaderAt, fileSize int64, pageSize int, txid uint64) error {
	if pageSize < pageHeaderSize+metaSize {
		return fmt.Errorf("page size %d", pageSize)
	}
	c := &pageChecker{f: f, pageSize: pageSize, seen: map[uint64]bool{}}
	var root, freelist uint64
	found := false
	for id := uint64(0); id < 2; id++ {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := f.ReadAt(buf, int64(id)*int64(pageSize)); err != nil {
			return fmt.Errorf("meta page %d: %w", id, err)
		}
		m := buf[pageHeaderSize:]
		if ne.Uint64(m[48:]) == txid { // the meta page this transaction reads
			root, freelist, c.hwm, found = ne.Uint64(m[16:]), ne.Uint64(m[32:]), ne.Uint64(m[40:]), true
		}
	}
	if !found {
		return fmt.Errorf("no meta page for transaction %d", txid)
	}
	// bbolt maps the file and reads any page below the high-water mark from memory: one past the end of the file
	// is a fault (SIGBUS) that kills the process.
	if c.hwm > uint64(fileSize)/uint64(pageSize) {
		return fmt.Errorf("the file holds %d bytes, its pages need %d", fileSize, c.hwm*uint64(pageSize))
	}
	c.seen[0], c.seen[1] = true, true
	if freelist != noFreelist {
		if err := c.freelist(freelist); err != nil {
			return err
		}
	}
	return c.tree(root)
}

// freelist checks the page that lists the free pages: bbolt loads it when it opens the file for writing.
func (c *pageChecker) freelist(id uint64) error {
	buf, err := c.page(id)
	if err != nil {
		return err
	}
	if flags := ne.Uint16(buf[8:]); flags != freelistPage {
		return fmt.Errorf("freelist page %d: type %#x", id, flags)
	}
	n, first := uint64(ne.Uint16(buf[10:])), pageHeaderSize
	if n == 0xffff { // the real count is the first element
		n, first = ne.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(buf)-first)/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit in it", id, n)
	}
	return nil
}

const (
	pageHeaderSize   = 16 // id u64, flags u16, count u16, overflow u32
	elementSize      = 16 // branch: pos u32, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	metaSize         = 64 // magic, version, pageSize, flags u32; root, sequence, freelist, pgid, txid, checksum u64
	bucketHeaderSize = 16 // root u64, sequence u64
	branchPage       = 0x01
	leafPage         = 0x02
	freelistPage     = 0x10
	bucketLeaf       = 0x01
	noFreelist       = 1<<64 - 1
)

var ne = binary.NativeEndian

type pageChecker struct {
	f        io.ReaderAt
	pageSize int
	hwm      uint64 // pages below it are allocated
	seen     map[uint64]bool
}

// tree checks the page id and everything below it.
func (c *pageChecker) tree(id uint64) error {
	buf, err := c.page(id)
	if err != nil {
		return err
	}
	return c.node(buf, id)
}

// page reads the page id with its overflow pages, once: a page reached twice is an error.
func (c *pageChecker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d: out of range [2, %d)", id, c.hwm)
	}
	hdr := make([]byte, pageHeaderSize)
	if err := c.read(hdr, id); err != nil {
		return nil, err
	}
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d: names itself page %d", id, got)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= c.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if c.seen[i] {
			return nil, fmt.Errorf("page %d: reached twice", i)
		}
		c.seen[i] = true
	}
	buf := make([]byte, (overflow+1)*uint64(c.pageSize))
	if err := c.read(buf, id); err != nil {
		return nil, err
	}
	return buf, nil
}

func (c *pageChecker) read(buf []byte, id uint64) error {
	if _, err := c.f.ReadAt(buf, int64(id)*int64(c.pageSize)); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("page %d: beyond the end of the file", id)
		}
		return fmt.Errorf("page %d: %w", id, err)
	}
	return nil
}

// node checks the branch or leaf page in buf (a page with its overflow, or a bucket's inline page) and follows
// its children and the buckets it holds.
func (c *pageChecker) node(buf []byte, id uint64) error {
	if len(buf) < pageHeaderSize {
		return fmt.Errorf("page %d: %d bytes", id, len(buf))
	}
	flags, count := ne.Uint16(buf[8:]), int(ne.Uint16(buf[10:]))
	if flags != branchPage && flags != leafPage {
		return fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
	}
	for i := range count {
		off := pageHeaderSize + i*elementSize
		if off+elementSize > len(buf) {
			return fmt.Errorf("page %d: element %d beyond the page", id, i)
		}
		e := buf[off : off+elementSize]
		if flags == branchPage {
			if err := span(buf, off, ne.Uint32(e), ne.Uint32(e[4:]), 0); err != nil {
				return fmt.Errorf("page %d: element %d: %w", id, i, err)
			}
			if err := c.tree(ne.Uint64(e[8:])); err != nil {
				return err
			}
			continue
		}
		pos, ksize, vsize := ne.Uint32(e[4:]), ne.Uint32(e[8:]), ne.Uint32(e[12:])
		if err := span(buf, off, pos, ksize, vsize); err != nil {
			return fmt.Errorf("page %d: element %d: %w", id, i, err)
		}
		if ne.Uint32(e)&bucketLeaf == 0 {
			continue
		}
		v := buf[off+int(pos)+int(ksize) : off+int(pos)+int(ksize)+int(vsize)]
		if len(v) < bucketHeaderSize {
			return fmt.Errorf("page %d: element %d: bucket of %d bytes", id, i, len(v))
		}
		var err error
		if root := ne.Uint64(v); root == 0 {
			err = c.node(v[bucketHeaderSize:], id) // an inline bucket: its page is in the value
		} else {
			err = c.tree(root)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// span checks that the key and value of the element at off (pos is relative to the element) lie within buf.
func span(buf []byte, off int, pos, ksize, vsize uint32) error {
	if end := uint64(off) + uint64(pos) + uint64(ksize) + uint64(vsize); end > uint64(len(buf)) {
		return fmt.Errorf("key and value end at byte %d of %d", end, len(buf))
	}
	return nil
}
