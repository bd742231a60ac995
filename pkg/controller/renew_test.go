package controller

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/issuer/issuerclient"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/signals/signalstest"
	"github.com/agentauth/agentauth/pkg/wire"
)

// workload is what a sidecar holds after attesting: its SVID and its WIT.
type workload struct {
	svid   *x509svid.SVID
	issued *issuerclient.Issued
}

// issuerClient connects to the controller's issuer at addr, authenticating it with the CA's bundle; with svid
// set the client presents it (mTLS, as Renew needs).
func issuerClient(t *testing.T, addr string, c *issuer.CA, svid *x509svid.SVID) *issuerclient.Client {
	t.Helper()
	auth := tlsconfig.AuthorizeID(wire.IssuerID(c.TrustDomain()))
	conf := tlsconfig.TLSClientConfig(c.X509Bundle(), auth)
	if svid != nil {
		conf = tlsconfig.MTLSClientConfig(svid, c.X509Bundle(), auth)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return issuerclient.NewClient(cc)
}

// renewalKeys makes fresh X.509 and WIT keys and the request parts that carry them.
func renewalKeys(t *testing.T) (x509Key, witKey *ecdsa.PrivateKey, csr, witPub []byte) {
	t.Helper()
	var err error
	if x509Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if witKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, x509Key); err != nil {
		t.Fatal(err)
	}
	if witPub, err = x509.MarshalPKIXPublicKey(witKey.Public()); err != nil {
		t.Fatal(err)
	}
	return x509Key, witKey, csr, witPub
}

func checkCredentials(t *testing.T, creds *agentauthv1.Credentials, x509Key, witKey crypto.Signer) *workload {
	t.Helper()
	is, err := issuerclient.VerifyCredentials(creds, x509Key.Public(), witKey.Public(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &workload{svid: &x509svid.SVID{ID: is.ID, Certificates: is.Chain, PrivateKey: x509Key}, issued: is}
}

func attestWorkload(t *testing.T, addr string, ca *issuer.CA, token string) (*workload, error) {
	t.Helper()
	xk, wk, csr, witPub := renewalKeys(t)
	creds, err := issuerClient(t, addr, ca, nil).Attest(context.Background(),
		&agentauthv1.AttestRequest{JoinToken: token, Csr: csr, WitPublicKey: witPub, WitAlg: "ES256"})
	if err != nil {
		return nil, err
	}
	return checkCredentials(t, creds, xk, wk), nil
}

func renewWorkload(t *testing.T, addr string, ca *issuer.CA, w *workload) (*workload, error) {
	t.Helper()
	xk, wk, csr, witPub := renewalKeys(t)
	creds, err := issuerClient(t, addr, ca, w.svid).Renew(context.Background(),
		&agentauthv1.RenewRequest{Csr: csr, WitPublicKey: witPub, WitAlg: "ES256"})
	if err != nil {
		return nil, err
	}
	return checkCredentials(t, creds, xk, wk), nil
}

// witIssuedAt is the iat of w's WIT: what sidecars judge revocations by (proxy.Identity.IssuedAt).
func witIssuedAt(t *testing.T, w *workload) time.Time {
	t.Helper()
	parts := strings.Split(w.issued.WIT, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		IAT int64 `json:"iat"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return time.Unix(claims.IAT, 0)
}

// refusedBySidecars reports which stored revocation, if any, a sidecar would apply to w, as pkg/sidecar's
// controlPlane.Check matches them: the agent's SPIFFE ID by its WIT's iat, the certificate by its serial.
func refusedBySidecars(t *testing.T, c *Controller, w *workload) string {
	t.Helper()
	revs, err := c.store.Revocations().List()
	if err != nil {
		t.Fatal(err)
	}
	idx, leaf, now := revocation.NewIndex(revs...), w.svid.Certificates[0], time.Now()
	if r := idx.Refusing(revocation.KindSPIFFE, "", w.svid.ID.String(), witIssuedAt(t, w), now); r != nil {
		return r.GetId()
	}
	if r := idx.Refusing(revocation.KindX509Serial, "", hex.EncodeToString(leaf.SerialNumber.Bytes()), leaf.NotBefore, now); r != nil {
		return r.GetId()
	}
	return ""
}

// oneEventSET is a one-event SET about the agent id.
func oneEventSET(id spiffeid.ID, event string, members map[string]any) signalstest.SET {
	return signalstest.SET{Subject: signals.SubjectID{Format: signals.FormatURI, URI: id.String()},
		Events: map[string]map[string]any{event: members}}
}

// TestRenewAfterRevocation: whether an agent whose credentials were revoked may renew them. A revocation that ends
// sessions lets the agent renew and resume (what it renews is not refused); one that renewal must not undo (a
// compromised key, a recycled identifier, a revoked certificate, an operator's -no-renew) refuses Renew with
// ErrRevoked, and the agent needs a new join token.
func TestRenewAfterRevocation(t *testing.T) {
	tr := newTransmitter(t)
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - {issuer: %s, audience: [%s], jwksURL: %s/jwks, pushAuthorization: "Bearer push-secret"}
`, tr.Issuer, ssfAudience, tr.Issuer))
	c, _ := runController(t, cfg)
	addr := c.issuerLn().Addr().String()
	pushURL := "http://" + c.ssfLn().Addr().String() + "/ssf/events"
	admin := adminClient(cfg)
	adminRevoke := func(noRenew bool) func(t *testing.T, w *workload) {
		return func(t *testing.T, w *workload) {
			req := RevokeRequest{Kind: "spiffe", Value: w.svid.ID.String(), Reason: "laptop stolen", NoRenew: noRenew}
			if code, body := adminPost(t, admin, "/v1/revocations", req); code != http.StatusCreated {
				t.Fatalf("admin revoke: HTTP %d %s", code, body)
			}
		}
	}
	event := func(event string, members func(w *workload) map[string]any) func(t *testing.T, w *workload) {
		return func(t *testing.T, w *workload) {
			var m map[string]any
			if members != nil {
				m = members(w)
			}
			if code := push(t, pushURL, "Bearer push-secret", tr.Sign(oneEventSET(w.svid.ID, event, m)).Token); code != http.StatusAccepted {
				t.Fatalf("push: HTTP %d", code)
			}
		}
	}
	tests := []struct {
		name   string
		revoke func(t *testing.T, w *workload)
		renews bool
	}{
		{"agentauthctl revoke", adminRevoke(false), true},
		{"agentauthctl revoke -no-renew", adminRevoke(true), false},
		{"CAEP session-revoked", event(signals.EventSessionRevoked, nil), true},
		{"RISC credential-compromise", event(signals.EventCredentialCompromise, func(*workload) map[string]any {
			return map[string]any{"credential_type": "x509"}
		}), false},
		{"RISC identifier-recycled", event(signals.EventIdentifierRecycled, nil), false},
		{"CAEP credential-change of the x509 serial", event(signals.EventCredentialChange, func(w *workload) map[string]any {
			leaf := w.svid.Certificates[0]
			return map[string]any{"credential_type": "x509", "change_type": "revoke",
				"x509_issuer": leaf.Issuer.String(), "x509_serial": hex.EncodeToString(leaf.SerialNumber.Bytes())}
		}), false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := spiffeid.RequireFromString(fmt.Sprintf("spiffe://example.org/agent/revoked%d", i))
			token, err := c.ca.CreateJoinToken(context.Background(), id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			old, err := attestWorkload(t, addr, c.ca, token)
			if err != nil {
				t.Fatal(err)
			}
			tt.revoke(t, old)
			rev := refusedBySidecars(t, c, old)
			if rev == "" {
				t.Fatal("set-up: the revocation does not refuse the old credentials")
			}
			// Judge the renewed WIT in a later second than the revocation's, as sidecars do (iat is in seconds).
			start := time.Now()
			waitFor(t, "the next second", func() bool { return time.Now().Truncate(time.Second).After(start) })

			renewed, err := renewWorkload(t, addr, c.ca, old)
			if !tt.renews {
				if !errors.Is(err, autherr.ErrRevoked) {
					t.Fatalf("Renew with credentials refused by %s: err = %v, want ErrRevoked", rev, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Renew after %s: %v", rev, err)
			}
			if by := refusedBySidecars(t, c, renewed); by != "" {
				t.Fatalf("the renewed credentials are refused by %s", by)
			}
		})
	}
}
