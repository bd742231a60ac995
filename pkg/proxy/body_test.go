package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBufferedBody: a buffered body is handed out whole, read or not, without a copy; anything else is not.
func TestBufferedBody(t *testing.T) {
	const content = `{"jsonrpc":"2.0","id":1}`
	r := httptest.NewRequest(http.MethodPost, "http://tool.test/mcp", strings.NewReader(content))
	if _, ok := BufferedBody(r); ok {
		t.Fatal("an unbuffered body was handed out")
	}
	b, _, err := bufferBody(r, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	half := make([]byte, 5)
	if _, err := io.ReadFull(r.Body, half); err != nil {
		t.Fatal(err)
	}
	got, ok := BufferedBody(r)
	if !ok || string(got) != content || &got[0] != &b[0] {
		t.Fatalf("BufferedBody = %q, %v; want the buffer itself, %q", got, ok, content)
	}
	// GetBody still gives a fresh reader over all of it, and Close is harmless.
	rc, err := r.GetBody()
	if err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(all, b) || rc.Close() != nil {
		t.Fatalf("GetBody read %q, %v", all, err)
	}
	empty := httptest.NewRequest(http.MethodPost, "http://tool.test/mcp", http.NoBody)
	if _, _, err := bufferBody(empty, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	if got, ok := BufferedBody(empty); ok || got != nil {
		t.Fatalf("an empty body: BufferedBody = %q, %v", got, ok)
	}
}
