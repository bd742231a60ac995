package mtls_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// rotating is a FileSource over files the test rewrites, as cert-manager or a SPIFFE helper would.
type rotating struct {
	*identity.FileSource
	ca  *testca.CA
	dir string
	id  spiffeid.ID
}

func newRotating(t *testing.T, ca *testca.CA, id spiffeid.ID) *rotating {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.WriteSVIDFiles(dir, ca.CreateX509SVID(id))
	src, err := identity.NewFileSource(identity.FileConfig{
		CertFile: cert, KeyFile: key,
		Bundles: map[spiffeid.TrustDomain][]string{ca.TrustDomain(): {ca.WriteBundleFile(dir)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rotating{src, ca, dir, id}
}

// rotate writes a new SVID and reloads; it returns the new serial.
func (r *rotating) rotate(t *testing.T) string {
	t.Helper()
	svid := r.ca.CreateX509SVID(r.id)
	r.ca.WriteSVIDFiles(r.dir, svid)
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	return svid.Certificates[0].SerialNumber.String()
}

func (r *rotating) serial() string {
	svid, _ := r.GetX509SVID()
	return svid.Certificates[0].SerialNumber.String()
}

// serve answers with the caller's SPIFFE ID, as the ingress would after PeerID.
func serve(t *testing.T, src mtls.Source) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := mtls.PeerID(r.TLS)
			if err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, id)
		}),
		TLSConfig: mtls.ServerConfig(src, mtls.AuthorizeIDs(agent)),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/"
}

type reply struct {
	serial string
	reused bool
	proto  int
}

func get(ctx context.Context, c *http.Client, url string) (reply, error) {
	var r reply
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { r.reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return r, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	if resp.StatusCode != http.StatusOK || string(body) != agent.String() {
		return r, fmt.Errorf("status %d body %q", resp.StatusCode, body)
	}
	r.serial = resp.TLS.PeerCertificates[0].SerialNumber.String()
	r.proto = resp.ProtoMajor
	return r, nil
}

func TestRotationKeepsConnectionsAndServesNewCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca := testca.New(t, td)
	server := newRotating(t, ca, tool)
	client := newRotating(t, ca, agent)
	url := serve(t, server)

	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			opts := []mtls.Option{mtls.WithNextProtos("http/1.1")}
			if h2 {
				opts = nil
			}
			tr := &http.Transport{TLSClientConfig: mtls.ClientConfig(client, mtls.AuthorizeIDs(tool), opts...), ForceAttemptHTTP2: h2}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}

			first, err := get(ctx, c, url)
			if err != nil {
				t.Fatal(err)
			}
			if wantProto := map[bool]int{true: 2, false: 1}[h2]; first.proto != wantProto {
				t.Fatalf("HTTP/%d, want HTTP/%d", first.proto, wantProto)
			}
			newSerial := server.rotate(t)
			client.rotate(t)

			again, err := get(ctx, c, url)
			if err != nil {
				t.Fatal("open connection broke after rotation:", err)
			}
			if !again.reused || again.serial != first.serial {
				t.Fatalf("open connection: reused=%v serial %s, want the old connection with serial %s", again.reused, again.serial, first.serial)
			}
			tr.CloseIdleConnections()
			fresh, err := get(ctx, c, url)
			if err != nil {
				t.Fatal(err)
			}
			if fresh.reused || fresh.serial != newSerial {
				t.Fatalf("new connection: reused=%v serial %s, want new serial %s", fresh.reused, fresh.serial, newSerial)
			}
		})
	}
}

// TestRotationUnderLoad: zero failed requests while both sides rotate several times under concurrent load, with
// some clients reusing connections and some handshaking on every request.
func TestRotationUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ca := testca.New(t, td)
	server := newRotating(t, ca, tool)
	client := newRotating(t, ca, agent)
	url := serve(t, server)
	issued := sync.Map{}
	issued.Store(server.serial(), true)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 6 {
		tr := &http.Transport{
			TLSClientConfig:   mtls.ClientConfig(client, mtls.AuthorizeIDs(tool)),
			ForceAttemptHTTP2: i%3 == 0,
			DisableKeepAlives: i%3 == 1, // a full handshake per request
		}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := get(ctx, c, url)
				if err == nil {
					if _, known := issued.Load(r.serial); !known {
						err = fmt.Errorf("server presented unknown serial %s", r.serial)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				ok.Add(1)
			}
		})
	}
	// Rotate only after traffic has moved on, so rotations really happen under load. Waiting on a count, not a clock.
	waitFor := func(n int64) {
		for ok.Load() < n && ctx.Err() == nil && failed.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	const rotations = 4
	for i := range rotations {
		waitFor(int64(20 * (i + 1)))
		issued.Store(server.rotate(t), true)
		client.rotate(t)
	}
	waitFor(20 * (rotations + 1))
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("load did not make progress")
	}
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %v", n, n+ok.Load(), firstErr.Load())
	}
	t.Logf("%d requests across %d rotations, none failed", ok.Load(), rotations)
}
