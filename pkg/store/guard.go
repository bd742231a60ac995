package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// bbolt asserts rather than returns on a damaged file: it panics on a page of the wrong type, a freelist that
// does not add up or a nil bucket, and a page past the end of a truncated file is a fault in its memory map,
// which kills the process unless the goroutine asked for a panic instead. These helpers are the boundary where
// both become ErrCorrupt: Open, every transaction, and backups go through them.

// openBolt opens path with bbolt, turning its checks of the meta pages and any panic or fault while it loads the
// freelist into ErrCorrupt.
func openBolt(path string, opts *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		// bbolt gives up the half-opened file only when it returns; after a panic its descriptor (and lock) is
		// released by the garbage collector. The caller gives up on the file anyway.
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("store: open %s: %w: %v", path, ErrCorrupt, p)
		}
	}()
	db, err = bolt.Open(path, 0o600, opts)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: %w (waited %s)", path, ErrLocked, opts.Timeout)
	case isOSError(err):
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	// What is left is bbolt's own judgement of the file: invalid or mismatched meta pages, a file too short.
	return nil, fmt.Errorf("store: open %s: %w: %w", path, ErrCorrupt, err)
}

func isOSError(err error) bool {
	var pe *os.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

// guard runs fn, which uses s.db, and turns a panic or a memory fault inside it into ErrCorrupt. The first
// such failure marks the store broken: bbolt's in-memory state after a panic mid-transaction is not to be
// trusted, so every later call fails with the same error, and Broken lets the owner stop.
func (s *Store) guard(fn func() error) (err error) {
	select {
	case <-s.broken:
		return s.brokenErr
	default:
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store: %s: %w: %v", s.db.Path(), ErrCorrupt, p)
			s.brokenOnce.Do(func() {
				s.brokenErr = err
				close(s.broken)
			})
		}
	}()
	return fn()
}

// view runs fn in a read transaction, through guard.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	return s.guard(func() error { return s.db.View(fn) })
}

// Broken is closed once a transaction found the file damaged; Err then says how. A process that cannot trust its
// state any more should stop.
func (s *Store) Broken() <-chan struct{} { return s.broken }

// Err is the error that broke the store (see Broken), or nil.
func (s *Store) Err() error {
	select {
	case <-s.broken:
		return s.brokenErr
	default:
		return nil
	}
}

// verify checks the tree of pages (checkPages) and then runs bbolt's consistency check of key order and page
// accounting (a page freed twice, or neither reachable nor free, would otherwise panic in a later commit).
func (s *Store) verify() error {
	f, err := os.Open(s.db.Path())
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.view(func(tx *bolt.Tx) error {
		if err := checkPages(f, fi.Size(), s.db.Info().PageSize, uint64(tx.ID())); err != nil {
			return fmt.Errorf("store: %s: %w: %w", s.db.Path(), ErrCorrupt, err)
		}
		var first error
		for err := range tx.Check() { // drain: Check's goroutine sends every finding
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return fmt.Errorf("store: %s: %w: %w", s.db.Path(), ErrCorrupt, first)
		}
		return nil
	})
}

// verifyFile checks the store file at path with bbolt opened read-only, which reads neither the freelist nor
// the tree until verify has checked them: opened for writing, bbolt loads the freelist at once, and a panic
// there leaves the file open and locked until the garbage collector closes it.
func verifyFile(path string, lockTimeout time.Duration) error {
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
	if err != nil {
		return err
	}
	s := &Store{db: db, broken: make(chan struct{})}
	err = s.verify()
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Backup writes a consistent snapshot of the whole store to w, as a store file that Open accepts, and returns
// the number of bytes written. It runs in a read transaction, so writers carry on meanwhile. size, if not nil, is
// called with the snapshot's exact size before the first byte is written (for a Content-Length).
func (s *Store) Backup(w io.Writer, size func(int64)) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// Verify checks the store file at path as Open does, without changing it: ErrAbsent if it is missing or empty,
// ErrCorrupt if it is damaged, ErrLocked if a process has it open. Use it on a backup before relying on it.
func Verify(path string) error {
	if err := exists(path); err != nil {
		return err
	}
	return verifyFile(path, defaultLockTimeout)
}

// exists returns ErrAbsent if path is missing or empty.
func exists(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0):
		return fmt.Errorf("store: %s: %w", path, ErrAbsent)
	case err != nil:
		return fmt.Errorf("store: %w", err)
	}
	return nil
}
