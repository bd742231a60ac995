package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
)

// ResponseHook inspects or rewrites the upstream's response before any of it reaches the caller (ingress signs
// responses here). An error refuses the response: the caller gets the refusal instead, nothing of the upstream's.
type ResponseHook func(res *http.Response) error

// OnResponse registers f to run on the upstream's response, after every step passed and the request was
// forwarded. Hooks run in registration order.
func (x *Exchange) OnResponse(f ResponseHook) {
	x.onResponse = append(x.onResponse, f)
}

func (x *Exchange) respond(res *http.Response) error {
	for _, f := range x.onResponse {
		if err := f(res); err != nil {
			return err
		}
	}
	return nil
}

// ResponseVerifier checks the upstream's response on egress routes with SignedResponses before the agent sees a
// byte of it. An error should wrap autherr.ErrResponseUnverified (502).
type ResponseVerifier interface {
	VerifyResponse(ctx context.Context, res *http.Response, rt *Route) error
}

// IsEventStream reports a text/event-stream (SSE) response: it ends when the server says so, so nothing that
// needs the whole body (a digest, a signature over it) can wait for it.
func IsEventStream(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && mt == "text/event-stream"
}

// BufferResponse reads res's body, at most max bytes, and gives res a fresh reader over the same bytes. A 101
// (whose body is the upgraded connection) and a body-less response read as nil. Beyond max it fails without
// consuming more; the caller must refuse the response then.
func BufferResponse(res *http.Response, max int64) ([]byte, error) {
	if res.StatusCode == http.StatusSwitchingProtocols || res.Body == nil || res.Body == http.NoBody {
		return nil, nil
	}
	if res.ContentLength > max {
		return nil, fmt.Errorf("response body of %d bytes is over the %d-byte limit for buffering", res.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("response body is over the %d-byte limit for buffering", max)
	}
	res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(b))
	return b, nil
}
