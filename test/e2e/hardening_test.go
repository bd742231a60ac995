package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/internal/testca"
)

// TestHTTPSigUnauthenticatedBodyNotBuffered (issue 13 item 6): the ingress sidecar used to buffer an httpsig
// request's body before verifying any credential, so 100 unauthenticated clients sending 8 MiB each took it to
// ~900 MB. Now the WIT and the signature over the headers are verified first: a forged request is refused while
// its body is still unsent. Signed calls through the egress sidecar still reach the tool with their body.
func TestHTTPSigUnauthenticatedBodyNotBuffered(t *testing.T) {
	ca := testca.New(t, trustDomain)
	p := startPair(t, ca, pairOptions{egressModes: "[httpsig]", ingressReq: "[httpsig]",
		ingressExtra: "limits:\n  maxBodyBytes: 16777216\n  bodyReadTimeout: 1h\n"})
	for _, tc := range []struct {
		name, header, code string
		status             int
	}{
		{"forged WIT", "Workload-Identity-Token: eyJhbGciOiJFUzI1NiJ9.e30.AAAA\r\n", `"malformed"`, http.StatusBadRequest},
		{"no WIT", "", `"credential_missing"`, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.ingressAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second)) // bounds a broken run; the answer comes at once
			io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: "+toolHost+"\r\nContent-Type: application/json\r\n"+
				"Content-Length: 8388608\r\nContent-Digest: sha-256=:AAAA:\r\n"+tc.header+
				"Signature-Input: wimse=(\"@method\");created=1;expires=2;nonce=\"n\";tag=\"wimse-workload-to-workload\"\r\n"+
				"Signature: wimse=:AAAA:\r\n\r\n")
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer while the body is unsent: %v", err)
			}
			body := readAll(t, res)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.code) {
				t.Fatalf("got %d %s, want %d %s", res.StatusCode, body, tc.status, tc.code)
			}
		})
	}
	big := `{"data":"` + strings.Repeat("x", 512<<10) + `"}`
	resp, err := p.agent().Post("http://"+toolHost+"/echo", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK || body != big {
		t.Fatalf("signed call got %d and %d bytes, want 200 and %d", resp.StatusCode, len(body), len(big))
	}
}
