package controller

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/signals"
)

// TestSSFOverTLSWithSecretFiles: the SSF receiver serves HTTPS with a certificate from files and serves a new
// certificate once the files change; its secrets come from files (with the trailing newline an editor adds): a
// push must carry pushAuthorizationFile's value, and the stream is managed and polled with
// stream.authorizationFile's.
func TestSSFOverTLSWithSecretFiles(t *testing.T) {
	tr := newTransmitter(t)
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"))
	dir := t.TempDir()
	svid := func() *x509.Certificate {
		s := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/ssf"), testca.WithDNSNames("ssf.test"))
		ca.WriteSVIDFiles(dir, s)
		return s.Certificates[0]
	}
	first := svid()
	secret := func(name, value string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  tls: {cert: %s, key: %s, reloadInterval: 50ms}
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      pushAuthorizationFile: %s
      stream: {authorizationFile: %s, delivery: poll}
      poll: {interval: 1s}
`, filepath.Join(dir, testca.SVIDCertFile), filepath.Join(dir, testca.SVIDKeyFile), tr.Issuer, ssfAudience, tr.Issuer,
		secret("push", "Bearer push-secret"), secret("mgmt", mgmtToken)))
	c, _ := runController(t, cfg)
	waitFor(t, "the stream, managed with the file's token, to be verified", func() bool { return streamVerified(t, c, tr.Issuer) == "1" })

	roots := x509.NewCertPool()
	roots.AddCert(ca.X509Authorities()[0])
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "ssf.test"}}}
	endpoint := "https://" + c.ssfLn().Addr().String() + "/ssf/events"
	push := func(auth, jti string) (int, *x509.Certificate) {
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(signEvent(tr, jti, agent("a"), signals.EventSessionRevoked).Token))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS.PeerCertificates[0]
	}
	if code, cert := push("Bearer push-secret", "over-tls"); code != http.StatusAccepted || !cert.Equal(first) {
		t.Fatalf("push over TLS: HTTP %d, certificate %v", code, cert.SerialNumber)
	}
	if _, ok := revokedBy(t, c, "over-tls"); !ok {
		t.Fatal("the pushed SET was not applied")
	}
	if code, _ := push("Bearer wrong", "wrong"); code != http.StatusBadRequest { // RFC 8935 authentication_failed
		t.Fatalf("push with a wrong Authorization: HTTP %d", code)
	}

	second := svid()
	client.Transport.(*http.Transport).DisableKeepAlives = true
	waitFor(t, "the new certificate to be served", func() bool {
		_, cert := push("Bearer push-secret", "after-reload")
		return cert.Equal(second)
	})
	if got := metric(t, c, `agentauth_ssf_tls_reloads_total{result="ok"} `); got != "1" {
		t.Fatalf("reloads counted: %q", got)
	}
}

// metric reads the value of the series that starts with prefix from the ops endpoint's /metrics.
func metric(t *testing.T, c *Controller, prefix string) string {
	resp, err := http.Get("http://" + c.opsLn().Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return ""
}
