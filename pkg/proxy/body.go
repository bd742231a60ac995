package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// bufferBody reads r's body into memory, at most max bytes (autherr.ErrTooLarge beyond), and makes it
// re-readable: r.Body is a fresh reader and r.GetBody returns another.
func bufferBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		r.Body, r.ContentLength = http.NoBody, 0
		r.GetBody = func() (io.ReadCloser, error) { return http.NoBody, nil }
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, fmt.Errorf("%w: request body of %d bytes is over the %d-byte limit for buffering", autherr.ErrTooLarge, r.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: reading request body: %v", autherr.ErrMalformed, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: request body is over the %d-byte limit for buffering", autherr.ErrTooLarge, max)
	}
	setBody(r, b)
	return b, nil
}

func setBody(r *http.Request, b []byte) {
	r.ContentLength = int64(len(b))
	r.TransferEncoding = nil
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	r.Body, _ = r.GetBody()
	if len(b) == 0 {
		r.Body = http.NoBody
	}
}
