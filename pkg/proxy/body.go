package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// bodyBudget caps the bytes of request bodies held in memory at once, across all requests of a handler: one
// request's cap (Limits.MaxBufferedBody) times the connections a listener accepts is far more than a sidecar
// should ever hold. Its size is the current Limits.MaxBufferedBodies: lowering it refuses new reservations until
// enough are released, never takes back bytes already held.
type bodyBudget struct {
	limits *LiveLimits
	used   atomic.Int64
}

// reserve takes n bytes of the budget, or reports that they are not there.
func (b *bodyBudget) reserve(n int64) bool {
	max := b.limits.Load().MaxBufferedBodies
	for {
		u := b.used.Load()
		if u+n > max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

func errBudget(n int64) error {
	return &statusError{status: http.StatusServiceUnavailable, header: http.Header{"Retry-After": {"1"}},
		err: fmt.Errorf("%w: %d more bytes of request body would exceed the memory budget for buffered bodies", autherr.ErrBodyBudget, n)}
}

// bufferBody reads r's body into memory, at most max bytes (autherr.ErrTooLarge beyond), and makes it
// re-readable: r.Body is a fresh reader and r.GetBody returns another. With a budget, the bytes are taken from it
// before they are read (autherr.ErrBodyBudget when it is spent); reserved is what the caller must give back.
func bufferBody(r *http.Request, max int64, budget *bodyBudget) (b []byte, reserved int64, err error) {
	if r.Body == nil || r.Body == http.NoBody {
		r.Body, r.ContentLength = http.NoBody, 0
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil, 0, nil
	}
	if r.ContentLength > max {
		return nil, 0, fmt.Errorf("%w: request body of %d bytes is over the %d-byte limit for buffering", autherr.ErrTooLarge, r.ContentLength, max)
	}
	take := func(n int64) bool {
		if budget == nil || budget.reserve(n) {
			reserved += n
			return true
		}
		return false
	}
	defer func() {
		if err != nil && budget != nil {
			budget.release(reserved)
			reserved = 0
		}
	}()
	// A known length is read into a buffer of that size (and one byte more, to see the end where it must be); an
	// unknown one (chunked) grows the buffer as bytes arrive, up to one byte past max. Either way a body never
	// costs much more than what the client sent, and every byte of capacity is taken from the budget first.
	capTo := max + 1
	if r.ContentLength >= 0 {
		capTo = r.ContentLength + 1
	}
	size := capTo
	if r.ContentLength < 0 {
		size = min(capTo, 512)
	}
	if !take(size) {
		return nil, reserved, errBudget(size)
	}
	b = make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			if int64(cap(b)) >= capTo {
				break
			}
			grow := min(capTo, 2*int64(cap(b))) - int64(cap(b))
			if !take(grow) {
				return nil, reserved, errBudget(grow)
			}
			nb := make([]byte, len(b), int64(cap(b))+grow)
			copy(nb, b)
			b = nb
		}
		n, rerr := r.Body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			r.Body.Close()
			return nil, reserved, bodyReadError(rerr)
		}
	}
	r.Body.Close()
	switch {
	case int64(len(b)) > max:
		return nil, reserved, fmt.Errorf("%w: request body is over the %d-byte limit for buffering", autherr.ErrTooLarge, max)
	case r.ContentLength >= 0 && int64(len(b)) != r.ContentLength:
		return nil, reserved, fmt.Errorf("%w: request body of %d bytes, not its Content-Length %d", autherr.ErrBadFraming, len(b), r.ContentLength)
	}
	setBody(r, b)
	return b, reserved, nil
}

func setBody(r *http.Request, b []byte) {
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return newBodyReader(b), nil }
	r.Body, _ = r.GetBody()
	if len(b) == 0 {
		r.Body = http.NoBody
	}
}

// bodyReader reads a buffered body, and hands the whole of it to BufferedBody: one allocation per reader, where
// io.NopCloser over a bytes.Reader is two.
type bodyReader struct {
	bytes.Reader
	b []byte
}

func newBodyReader(b []byte) *bodyReader {
	br := &bodyReader{b: b}
	br.Reset(b)
	return br
}

func (*bodyReader) Close() error { return nil }

// BufferedBody returns the whole body of r, read or not, when r.Body is one the proxy buffered (a request on a
// route whose proof covers the body), without copying it: the bytes are shared and must not be modified. ok is
// false for any other body; r.GetBody is then the way to read it again.
func BufferedBody(r *http.Request) (b []byte, ok bool) {
	if br, isBuffered := r.Body.(*bodyReader); isBuffered {
		return br.b, true
	}
	return nil, false
}

// bodyReadError classifies a failure to read the client's request body: too slow (autherr.ErrBodyTimeout) or not
// valid HTTP framing, cut short included (autherr.ErrBadFraming). An error already classified is kept.
func bodyReadError(err error) error {
	if autherr.Of(err) != nil {
		return err
	}
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%w: the request body did not arrive in time: %v", autherr.ErrBodyTimeout, err)
	}
	return fmt.Errorf("%w: reading the request body: %v", autherr.ErrBadFraming, err)
}

// clientBody is an inbound request body as ingress reads it, to buffer or to forward it. It bounds how slowly the
// client may send (Limits.BodyReadTimeout and BodyMinRate) and keeps the first read failure, so that a forward that
// fails because of the client's body is not reported as the upstream's failure.
//
// Only the time spent waiting on the client counts: the time allowed is BodyReadTimeout plus one second for every
// BodyMinRate bytes received so far, less the time already spent inside Read. While the upstream is slow to take
// the body, nothing reads, and the client is not blamed.
type clientBody struct {
	body    io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration // 0: no deadline
	minRate int64
	n       int64
	waited  time.Duration

	mu  sync.Mutex
	err error
}

// watchBody wraps r.Body (when there is one) and sets the first deadline at once, so that a body nobody reads,
// which net/http drains after a refusal to reuse the connection, is bounded too.
func watchBody(w http.ResponseWriter, r *http.Request, lim Limits) *clientBody {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &clientBody{body: r.Body, rc: http.NewResponseController(w), timeout: lim.BodyReadTimeout, minRate: lim.BodyMinRate}
	_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	r.Body = b
	return b
}

func (b *clientBody) Read(p []byte) (int, error) {
	start := time.Now()
	if b.timeout > 0 {
		allowed := b.timeout + time.Duration(b.n)*time.Second/time.Duration(b.minRate) - b.waited
		_ = b.rc.SetReadDeadline(start.Add(allowed))
	}
	n, err := b.body.Read(p)
	b.n += int64(n)
	b.waited += time.Since(start)
	switch {
	case err == io.EOF:
		// Done: the connection's next reads (the next request, or net/http watching for the client to go away
		// during a long response) must not inherit a body deadline.
		b.unbound()
	case err != nil:
		err = bodyReadError(err)
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.body.Close() }

// unbound lifts the deadline: the body is complete, or it is a stream that may pause (gRPC).
func (b *clientBody) unbound() {
	if b.timeout > 0 {
		b.timeout = 0
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

// failure is the first error reading the body, classified by bodyReadError; nil if none.
func (b *clientBody) failure() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
