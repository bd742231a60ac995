package identity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// fileReloader is the reload discipline shared by the file-based sources: read every file, skip if nothing
// changed, build and validate, swap only on success, report a rejected content once.
type fileReloader struct {
	paths    []string
	observer Observer
	updates  *notifier

	mu      sync.Mutex // one reload at a time; readers of the swapped state never take it
	current [sha256.Size]byte
	failed  [sha256.Size]byte
}

func newFileReloader(paths []string, observer Observer) *fileReloader {
	if observer == nil {
		observer = ObserverFuncs{}
	}
	return &fileReloader{paths: paths, observer: observer, updates: newNotifier()}
}

// reload reads the files and, when their content changed, calls build with it; build validates and swaps the
// new state in, or returns an error and leaves the old one. status describes the state after a swap.
func (r *fileReloader) reload(build func(files map[string][]byte, now time.Time) error, status func() Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()

	files, digest, err := r.readAll()
	if err != nil {
		return r.fail(err, sha256.Sum256([]byte(err.Error())))
	}
	if digest == r.current {
		return nil
	}
	if err := build(files, time.Now()); err != nil {
		return r.fail(err, digest)
	}
	r.current, r.failed = digest, [sha256.Size]byte{}
	// Observers first: whoever wakes on the signal sees the rotation counted.
	r.observer.Rotated(status())
	r.updates.notify()
	return nil
}

// fail reports a rejected reload once per distinct content, so a watcher polling a broken file does not count
// the same failure on every tick.
func (r *fileReloader) fail(err error, digest [sha256.Size]byte) error {
	if digest != r.failed {
		r.failed = digest
		r.observer.RotationFailed(err)
	}
	return err
}

func (r *fileReloader) readAll() (map[string][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	files := make(map[string][]byte, len(r.paths))
	for _, p := range r.paths {
		data, err := readFile(p)
		if err != nil {
			return nil, [sha256.Size]byte{}, &ReloadError{Path: p, Err: err}
		}
		files[p] = data
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(data))
		h.Write(data)
	}
	var digest [sha256.Size]byte
	h.Sum(digest[:0])
	return files, digest, nil
}

// watch calls reload every interval until ctx ends. Hashing content (not mtimes) catches same-second rewrites
// and atomic renames alike; failures reach the Observer and the old state stays in use.
func watch(ctx context.Context, interval time.Duration, reload func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			_ = reload()
		}
	}
}

// ReloadError is returned when new credential material is rejected. Err wraps an autherr reason where one applies
// (ErrExpired, ErrMismatch, ErrMalformed, ErrUntrustedIssuer, ...) or the file system error.
type ReloadError struct {
	Path string // the file at fault; empty when the fault is between files
	Err  error
}

func (e *ReloadError) Error() string {
	if e.Path == "" {
		return "identity: reload rejected: " + e.Err.Error()
	}
	return fmt.Sprintf("identity: reload rejected: %s: %v", e.Path, e.Err)
}

func (e *ReloadError) Unwrap() error { return e.Err }
