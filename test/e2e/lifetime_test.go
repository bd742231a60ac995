package e2e

import (
	"bufio"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestIssuerRotationUnderLoad: with the controller issuing 4-second SVIDs (the sidecars renew every ~2s), an
// agent calls steadily through its sidecar pair. No call fails; every call reaches the tool authenticated by a
// client certificate that was valid when it was sent, and by more than a few of them over the run (the rotated
// certificates are used for mTLS, not only for WITs); and the connections open when the load stops are closed
// by the time their certificates expire.
func TestIssuerRotationUnderLoad(t *testing.T) {
	const ttl = 4 * time.Second
	c := startControllerIssuer(t, t.TempDir(), fmt.Sprintf(", svidTTL: %s", ttl))
	mustContain(t, c.proc.Output(), "issuer.svidTTL is below the sane minimum")
	policyFile := writeFile(t, t.TempDir(), "weather.cedar", weatherPolicy)
	c.ctl(t, false, "policy", "apply", policyFile)
	p := startManagedPair(t, c)
	url := "http://" + toolHost + "/whoami"
	waitStatus(t, p, url, http.StatusOK)

	// The agent's sidecar keeps its current SVID in its state directory: every certificate it presents is seen
	// there, and its NotAfter read.
	certs := &certLog{notAfter: map[string]time.Time{}}
	stateCert := filepath.Join(p.managedDir, "agent-state", "svid.pem")
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			certs.read(stateCert)
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	type call struct {
		sent time.Time
		hash string
	}
	var (
		mu       sync.Mutex
		calls    []call
		failed   atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	stop := time.Now().Add(4 * ttl)
	for range 4 {
		wg.Go(func() {
			cl := p.agent()
			for time.Now().Before(stop) {
				sent := time.Now()
				resp, err := cl.Get(url)
				var body string
				if err == nil {
					body = readAll(t, resp)
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%d %s", resp.StatusCode, body)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mu.Lock()
				calls = append(calls, call{sent, xfccHash(body)})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	open := connsTo(t, p.ingressAddr)
	loadEnd := time.Now()
	close(stopWatch)
	<-watched

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of %d calls failed; first: %v", n, int(n)+len(calls), firstErr.Load())
	}
	hashes := map[string]int{}
	for _, c := range calls {
		na, ok := certs.expiry(c.hash)
		if !ok {
			t.Fatalf("a call was authenticated by certificate %q, which the agent's sidecar never held", c.hash)
		}
		if c.sent.After(na) {
			t.Fatalf("a call sent at %s was authenticated by a certificate that expired at %s", c.sent.Format(time.StampMilli), na.Format(time.StampMilli))
		}
		hashes[c.hash]++
	}
	if len(hashes) < 4 {
		t.Fatalf("%d calls over %v used %d client certificates: the rotated ones are not used for mTLS", len(calls), 4*ttl, len(hashes))
	}
	// Every certificate of a connection open at loadEnd was issued before it, so expires by loadEnd+ttl.
	deadline := loadEnd.Add(ttl + 15*time.Second)
	for {
		left := 0
		now := connsTo(t, p.ingressAddr)
		for port := range open {
			if now[port] {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d connections open when the load stopped are still open %v later, past their certificates' expiry",
				left, len(open), time.Since(loadEnd).Round(time.Second))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d calls, 0 failed, %d client certificates; %d connections open at the end, all closed since", len(calls), len(hashes), len(open))
}

// certLog maps the SHA-256 (hex) of each certificate seen to its NotAfter.
type certLog struct {
	mu       sync.Mutex
	notAfter map[string]time.Time
}

func (l *certLog) read(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return // caught mid-write: the next read gets it
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return
	}
	l.add(leaf.Raw, leaf.NotAfter)
}

func (l *certLog) add(raw []byte, notAfter time.Time) {
	sum := sha256.Sum256(raw)
	l.mu.Lock()
	l.notAfter[hex.EncodeToString(sum[:])] = notAfter
	l.mu.Unlock()
}

func (l *certLog) expiry(hash string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	na, ok := l.notAfter[hash]
	return na, ok
}

// xfccHash is the Hash= of the X-Forwarded-Client-Cert the tool was handed, read from its whoami answer.
func xfccHash(body string) string {
	_, h, _ := strings.Cut(body, "Hash=")
	return strings.TrimRightFunc(h[:min(len(h), 64)], func(r rune) bool { return !strings.ContainsRune("0123456789abcdef", r) })
}

// connsTo returns the local ports of the established TCP connections to addr (IPv4 loopback), from /proc.
func connsTo(t *testing.T, addr string) map[int]bool {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	out := map[int]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "01" { // ESTABLISHED
			continue
		}
		_, rem, _ := strings.Cut(fields[2], ":")
		_, loc, _ := strings.Cut(fields[1], ":")
		rp, err1 := strconv.ParseInt(rem, 16, 32)
		lp, err2 := strconv.ParseInt(loc, 16, 32)
		if err1 == nil && err2 == nil && int(rp) == port {
			out[int(lp)] = true
		}
	}
	return out
}
