package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Durability says when Append returns: once its record is fsynced (Sync), or once it is written to the file and so
// survives the process, with the fsync following within BatchWait (Batched).
type Durability string

const (
	// Sync returns once the record is fsynced: records that arrive while one fsync runs share the next (group
	// commit). A crash of the process or of the machine loses no acknowledged record.
	Sync Durability = "sync"
	// Batched returns once the record is written to the file (in the kernel's page cache), and fsyncs in the
	// background within BatchWait of the first unsynced write. A crash of the process loses no acknowledged record;
	// a crash of the machine (power, kernel) loses at most the records of the last BatchWait. Appends never wait for
	// the disk, which is what keeps a busy sidecar's throughput.
	Batched Durability = "batched"
)

// Defaults of Options.
const (
	DefaultMaxFileBytes       = 64 << 20
	DefaultCheckpointInterval = 10 * time.Second
	DefaultBatchWait          = 50 * time.Millisecond
	DefaultBatchMax           = 512
)

// Options configure a Writer.
type Options struct {
	Dir string
	// Signer signs checkpoints; its name is the log's origin.
	Signer     note.Signer
	Durability Durability
	// BatchWait bounds how long a Batched record may be written but not yet fsynced.
	BatchWait time.Duration
	// BatchMax caps the records one write carries.
	BatchMax           int
	MaxFileBytes       int64
	CheckpointInterval time.Duration
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" || o.Signer == nil {
		return o, errors.New("audit: Options need Dir and Signer")
	}
	switch o.Durability {
	case "":
		o.Durability = Sync
	case Sync, Batched:
	default:
		return o, fmt.Errorf("audit: durability %q: want %s or %s", o.Durability, Sync, Batched)
	}
	if o.BatchWait <= 0 {
		o.BatchWait = DefaultBatchWait
	}
	if o.BatchMax <= 0 {
		o.BatchMax = DefaultBatchMax
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = DefaultMaxFileBytes
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	return o, nil
}

// ErrUnavailable is wrapped by Append once the log cannot be written (a full disk, an I/O error): the record is
// not durable, and a caller that must not act unaudited refuses.
var ErrUnavailable = errors.New("audit: log unavailable")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: writer closed")

var rangeFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// head is the tree at the end of a batch, and where the log ends on disk.
type head struct {
	Size   uint64   `json:"size"`
	Hashes [][]byte `json:"hashes"` // the compact range [0, Size)
	Prev   []byte   `json:"prev"`   // leaf hash of record Size-1
	File   int      `json:"file"`
	Offset int64    `json:"offset"`
}

type batch struct {
	buf  []byte
	n    int
	head head // tree after this batch (File and Offset set by the committer)
	done chan struct{}
	err  error
}

// Writer appends records to a log directory: numbered JSON-lines files that continue one RFC 6962 Merkle tree,
// with group commit, size-based rotation and signed checkpoints. It is safe for concurrent use.
type Writer struct {
	opts Options

	mu     sync.Mutex
	next   uint64
	prev   []byte
	tree   *compact.Range
	cur    *batch
	err    error // sticky: once set, every Append fails
	closed bool

	kick chan struct{} // a batch has its first record, or is full
	stop chan struct{}
	done chan struct{}

	// Batched: the committer kicks the syncer after a write; the syncer fsyncs what was written and marks it durable.
	syncKick   chan struct{}
	syncerDone chan struct{}
	// fileMu orders the syncer's fsync of f with the committer's rotation, which closes f.
	fileMu sync.Mutex

	// headMu guards written and durable, which the committer and the syncer both move.
	headMu  sync.Mutex
	written head // where the log ends in the file
	durable head // where the log ends on disk (fsynced): what checkpoints sign

	// Owned by the committer goroutine.
	f        *os.File
	spare    []byte // the buffer of the last batch written, for the next one
	fileNo   int
	fileSize int64
	lastCP   uint64
	cpFile   *os.File
}

// Open opens or creates the log in opts.Dir and resumes its tree: from the state saved at the last checkpoint,
// then every record after it. A partial last line (a write cut short by a crash; never acknowledged) is cut off.
// A log that does not continue its saved state is refused: it was changed behind the writer's back.
func Open(opts Options) (*Writer, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w := &Writer{opts: opts, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		syncKick: make(chan struct{}, 1), syncerDone: make(chan struct{})}
	h, err := w.recover()
	if err != nil {
		return nil, err
	}
	w.written, w.durable, w.lastCP = h, h, h.Size
	if st, err := readState(opts.Dir); err == nil && st != nil {
		w.lastCP = st.Size
	}
	w.next, w.prev = h.Size, h.Prev
	if w.tree, err = rangeFactory.NewRange(0, h.Size, h.Hashes); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w.f, err = os.OpenFile(filepath.Join(opts.Dir, logFileName(h.File)), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	w.fileNo, w.fileSize = h.File, h.Offset
	w.cpFile, err = os.OpenFile(filepath.Join(opts.Dir, CheckpointsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		_ = w.f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syncDir(opts.Dir); err != nil {
		_ = w.f.Close()
		_ = w.cpFile.Close()
		return nil, err
	}
	w.cur = w.newBatch()
	go w.commitLoop()
	if opts.Durability == Batched {
		go w.syncLoop()
	} else {
		close(w.syncerDone)
	}
	return w, nil
}

// Origin is the log's origin, the name on its checkpoints.
func (w *Writer) Origin() string { return w.opts.Signer.Name() }

// newBatch starts the next batch, in the buffer of the last one written. Only Open and the committer call it.
func (w *Writer) newBatch() *batch {
	b := &batch{buf: w.spare[:0], done: make(chan struct{})}
	w.spare = nil
	return b
}

// Append gives r the next index (r.Index is set), writes it, and returns once it is durable as the Durability
// says. When the log cannot be written, the error wraps ErrUnavailable; when ctx ends first, the record may still be
// written.
func (w *Writer) Append(ctx context.Context, r *Record) (uint64, error) {
	// The record is encoded before taking the lock; under it, only its index and the previous record's hash are put
	// in front, straight into the batch, and its leaf hashed into the tree.
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	body, err := r.appendBody((*bp)[:0])
	*bp = body
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	b := w.cur
	start := len(b.buf)
	var prev []byte
	if w.next > 0 {
		prev = w.prev
	}
	b.buf = appendLine(b.buf, w.next, prev, body)
	line := b.buf[start:]
	if len(line) > MaxRecordBytes {
		b.buf = b.buf[:start]
		w.mu.Unlock()
		return 0, fmt.Errorf("audit: record %d is %d bytes, over %d", w.next, len(line), MaxRecordBytes)
	}
	h := LeafHash(line)
	if err := w.tree.Append(h, nil); err != nil {
		b.buf = b.buf[:start]
		w.mu.Unlock()
		return 0, fmt.Errorf("audit: %w", err)
	}
	b.buf = append(b.buf, '\n')
	r.Index = w.next
	w.next++
	w.prev = h
	b.n++
	if b.n == 1 || b.n >= w.opts.BatchMax {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	select {
	case <-b.done:
		if b.err != nil {
			return 0, b.err
		}
		return r.Index, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("audit: waiting for record %d to be durable: %w", r.Index, ctx.Err())
	}
}

// bodyPool holds the buffers Append encodes records into.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Size is the number of records appended (durable or about to be).
func (w *Writer) Size() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// Close commits what is pending, signs a last checkpoint and closes the files.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stop)
	<-w.done
	<-w.syncerDone
	var errs []error
	if w.err == nil {
		errs = append(errs, w.checkpoint())
	}
	errs = append(errs, w.f.Close(), w.cpFile.Close())
	return errors.Join(errs...)
}

func (w *Writer) commitLoop() {
	defer close(w.done)
	ticker := time.NewTicker(w.opts.CheckpointInterval)
	defer ticker.Stop()
	for {
		stopping := false
		select {
		case <-w.kick:
			// Let the goroutines that are ready to run go first: those about to append join this batch and share
			// its write, rather than each paying for one.
			runtime.Gosched()
		case <-ticker.C:
			w.checkpointLogged()
			continue
		case <-w.stop:
			stopping = true
		}
		w.mu.Lock()
		b := w.cur
		if b.n == 0 {
			w.mu.Unlock()
			if stopping {
				return
			}
			continue
		}
		w.cur = w.newBatch()
		b.head = head{Size: w.next, Hashes: slices.Clone(w.tree.Hashes()), Prev: w.prev}
		failed := w.err
		w.mu.Unlock()
		if failed != nil {
			b.err = failed
		} else if err := w.commit(b); err != nil {
			b.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
			w.mu.Lock()
			w.err = b.err
			w.mu.Unlock()
		}
		close(b.done)
		w.spare = b.buf
		// Records that arrived during the fsync form the next batch: go round again without waiting for a kick.
		select {
		case w.kick <- struct{}{}:
		default:
		}
		if stopping {
			w.mu.Lock()
			empty := w.cur.n == 0
			w.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// commit writes a batch, fsyncs it in Sync mode (Batched leaves that to the syncer), and rotates to a new file
// once the current one is over MaxFileBytes. A record never spans two files.
func (w *Writer) commit(b *batch) error {
	n, err := w.f.Write(b.buf)
	w.fileSize += int64(n)
	if err != nil {
		return fmt.Errorf("writing %s: %w", w.f.Name(), err)
	}
	b.head.File, b.head.Offset = w.fileNo, w.fileSize
	w.headMu.Lock()
	w.written = b.head
	w.headMu.Unlock()
	if w.opts.Durability == Sync {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", w.f.Name(), err)
		}
		w.markDurable(b.head)
	} else {
		select {
		case w.syncKick <- struct{}{}:
		default:
		}
	}
	if w.fileSize < w.opts.MaxFileBytes {
		return nil
	}
	next, err := os.OpenFile(filepath.Join(w.opts.Dir, logFileName(w.fileNo+1)), os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("rotating: %w", err)
	}
	if err := syncDir(w.opts.Dir); err != nil {
		_ = next.Close()
		return fmt.Errorf("rotating: %w", err)
	}
	// The old file must be on disk before it is closed: the syncer only ever fsyncs the current one.
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	if err := w.f.Sync(); err != nil {
		_ = next.Close()
		return fmt.Errorf("syncing %s: %w", w.f.Name(), err)
	}
	w.markDurable(b.head)
	_ = w.f.Close()
	w.f, w.fileNo, w.fileSize = next, w.fileNo+1, 0
	rotated := head{Size: b.head.Size, Hashes: b.head.Hashes, Prev: b.head.Prev, File: w.fileNo}
	w.headMu.Lock()
	w.written, w.durable = rotated, rotated
	w.headMu.Unlock()
	return nil
}

// markDurable records that the log is on disk up to h.
func (w *Writer) markDurable(h head) {
	w.headMu.Lock()
	if h.Size >= w.durable.Size {
		w.durable = h
	}
	w.headMu.Unlock()
}

// syncLoop is the Batched writer's syncer: after a write it waits out BatchWait, so that one fsync covers every
// write of that window, then fsyncs. It stops once the committer has stopped, after a last fsync.
func (w *Writer) syncLoop() {
	defer close(w.syncerDone)
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-w.syncKick:
		case <-w.done:
			w.syncWritten()
			return
		}
		t.Reset(w.opts.BatchWait)
		select {
		case <-t.C:
		case <-w.done:
			t.Stop()
		}
		w.syncWritten()
	}
}

// syncWritten fsyncs what is written and marks it durable; a failure makes the log unavailable, as a failed write
// does.
func (w *Writer) syncWritten() {
	w.fileMu.Lock()
	w.headMu.Lock()
	h := w.written
	w.headMu.Unlock()
	err := w.f.Sync()
	w.fileMu.Unlock()
	if err == nil {
		w.markDurable(h)
		return
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = fmt.Errorf("%w: syncing: %w", ErrUnavailable, err)
	}
	w.mu.Unlock()
}

func (w *Writer) checkpointLogged() {
	if err := w.checkpoint(); err != nil {
		w.mu.Lock()
		if w.err == nil {
			w.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		w.mu.Unlock()
	}
}

// checkpoint signs the durable tree head, appends it to the checkpoints file and saves the tree state, when the
// tree grew since the last one. Only the committer (or Close, after it stopped) calls it.
func (w *Writer) checkpoint() error {
	w.headMu.Lock()
	h := w.durable
	w.headMu.Unlock()
	if h.Size == 0 || h.Size == w.lastCP {
		return nil
	}
	r, err := rangeFactory.NewRange(0, h.Size, h.Hashes)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	msg, err := SignCheckpoint(Checkpoint{Origin: w.Origin(), Size: h.Size, Root: root}, w.opts.Signer)
	if err != nil {
		return err
	}
	if _, err := w.cpFile.Write(append(msg, '\n')); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := w.cpFile.Sync(); err != nil {
		return fmt.Errorf("syncing checkpoint: %w", err)
	}
	st, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(w.opts.Dir, stateFile), st, 0o600); err != nil {
		return err
	}
	w.lastCP = h.Size
	return nil
}

func readState(dir string) (*head, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var h head
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, stateFile, err)
	}
	return &h, nil
}

// recover finds where the log ends: from the saved state (or the first file) it reads every later record, checks
// that each continues the tree (index and prev), and cuts a partial last line.
func (w *Writer) recover() (head, error) {
	dir := w.opts.Dir
	nums, err := logFiles(dir)
	if err != nil {
		return head{}, err
	}
	h := head{File: 1}
	if st, err := readState(dir); err != nil {
		return head{}, err
	} else if st != nil {
		h = *st
	}
	if len(nums) == 0 {
		if h.Size != 0 {
			return head{}, fmt.Errorf("%w: the saved tree has %d records and there is no log file", ErrMalformed, h.Size)
		}
		return h, nil
	}
	if h.File < 1 || h.File > len(nums) {
		return head{}, fmt.Errorf("%w: the saved tree ends in %s, which is missing", ErrMalformed, logFileName(h.File))
	}
	tree, err := rangeFactory.NewRange(0, h.Size, h.Hashes)
	if err != nil {
		return head{}, fmt.Errorf("%w: %s: %w", ErrMalformed, stateFile, err)
	}
	for n := h.File; n <= len(nums); n++ {
		path := filepath.Join(dir, logFileName(n))
		offset := int64(0)
		if n == h.File {
			offset = h.Offset
			if fi, err := os.Stat(path); err != nil || fi.Size() < offset {
				return head{}, fmt.Errorf("%w: %s is shorter than the saved tree says (%d bytes)", ErrMalformed, logFileName(n), offset)
			}
		}
		end := offset
		torn, err := scanFile(path, offset, 0, func(pos Position, line []byte) error {
			rec, err := ParseRecord(line)
			if err != nil {
				return fmt.Errorf("%s offset %d: %w", pos.File, pos.Offset, err)
			}
			if rec.Index != h.Size || !bytes.Equal(prevOf(rec), h.Prev) {
				return fmt.Errorf("%w: %s offset %d: record %d does not continue the tree at %d", ErrMalformed, pos.File, pos.Offset, rec.Index, h.Size)
			}
			lh := LeafHash(line)
			if err := tree.Append(lh, nil); err != nil {
				return err
			}
			h.Size++
			h.Prev = lh
			end = pos.Offset + int64(len(line)) + 1
			return nil
		})
		if err != nil {
			return head{}, err
		}
		if torn != nil {
			if n != len(nums) {
				return head{}, fmt.Errorf("%w: %s ends in a partial line", ErrMalformed, logFileName(n))
			}
			if err := os.Truncate(path, end); err != nil {
				return head{}, fmt.Errorf("audit: cutting the partial last record: %w", err)
			}
		}
		h.File, h.Offset = n, end
	}
	h.Hashes = tree.Hashes()
	return h, nil
}

func prevOf(r *Record) []byte {
	if r.Prev == "" {
		return nil
	}
	b, _ := base64.StdEncoding.DecodeString(r.Prev)
	return b
}

// Recorder appends records to a log and returns once each is durable; *Writer is one. Whoever acts and must leave
// a record (the controller, the witness) takes a Recorder.
type Recorder interface {
	Append(ctx context.Context, r *Record) (uint64, error)
}

var _ Recorder = (*Writer)(nil)
