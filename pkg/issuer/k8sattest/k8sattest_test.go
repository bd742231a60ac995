package k8sattest_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/identity"
	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/issuer/k8sattest"
	"github.com/agentauth/agentauth/pkg/store"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

const audience = "agentauth-controller"

var td = spiffeid.RequireTrustDomainFromString("example.org")

// controller is a real issuer (file keys, bbolt store, gRPC on TLS on loopback) with a Kubernetes attestor.
type controller struct {
	ca      *issuer.CA
	addr    string
	reg     *prometheus.Registry
	logs    *observer.ObservedLogs
	counter func(result string) float64
}

func startController(t *testing.T, client kubernetes.Interface, cfg k8sattest.Config) *controller {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := issuer.NewFileKeyStore(filepath.Join(t.TempDir(), "keys"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := issuer.New(context.Background(), issuer.Config{TrustDomain: td, Keys: keys, Store: issuer.NewBoltStore(st)})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	a, err := k8sattest.New(cfg, k8sattest.Options{Client: client, TrustDomain: td, Logger: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	g, err := issuer.NewGRPCServer(ca, issuer.ServiceConfig{SVIDTTL: time.Hour, Kubernetes: a})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	c := &controller{ca: ca, addr: ln.Addr().String(), reg: reg, logs: logs}
	c.counter = func(result string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	return c
}

// attest runs the sidecar's side: an IssuerSource attesting with token (written to its token file).
func (c *controller) attest(t *testing.T, token string) (*identity.IssuerSource, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewIssuerSource(context.Background(), identity.IssuerConfig{
		Address: c.addr, Bundle: c.ca.X509Bundle(), KubernetesTokenFile: file, RetryMax: time.Second,
	})
	if err == nil {
		t.Cleanup(func() { src.Close() })
	}
	return src, err
}

// cluster is a namespace of the test API server with a service account "agent" and a pod "agent-0" running as
// it (Pending: there are no nodes, which changes nothing here).
type cluster struct {
	srv *kubetest.Server
	ns  string
	sa  *corev1.ServiceAccount
	pod *corev1.Pod
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	srv := kube.Server(t)
	ctx := context.Background()
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if _, err := srv.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := &cluster{srv: srv, ns: ns}
	cl.sa, cl.pod = cl.createPod(t, "agent", "agent-0")
	return cl
}

// createPod creates service account sa (unless it exists) and a pod running as it.
func (cl *cluster) createPod(t *testing.T, sa, pod string) (*corev1.ServiceAccount, *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	account, err := cl.srv.Client.CoreV1().ServiceAccounts(cl.ns).Get(ctx, sa, metav1.GetOptions{})
	if err != nil {
		account, err = cl.srv.Client.CoreV1().ServiceAccounts(cl.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	p, err := cl.srv.Client.CoreV1().Pods(cl.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod},
		Spec: corev1.PodSpec{ServiceAccountName: sa, Containers: []corev1.Container{
			{Name: "agent", Image: "registry.example/agent:1"},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return account, p
}

// token makes a token for service account sa with TokenRequest (600s, the least it allows), bound to pod unless
// it is nil.
func (cl *cluster) token(t *testing.T, sa string, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	expiry := int64(600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cl.srv.Client.CoreV1().ServiceAccounts(cl.ns).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// forge signs a pod-bound service-account token with the API server's own service-account key, as its
// TokenRequest would, but with the given validity, which TokenRequest does not allow (at least 600s from now).
func (cl *cluster) forge(t *testing.T, issuedAt, expiry time.Time) string {
	t.Helper()
	pub, err := x509.MarshalPKIXPublicKey(cl.srv.ServiceAccountKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	kid := sha256.Sum256(pub)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: cl.srv.ServiceAccountKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(kid[:])))
	if err != nil {
		t.Fatal(err)
	}
	type ref struct {
		Name string    `json:"name"`
		UID  types.UID `json:"uid"`
	}
	private := map[string]any{"kubernetes.io": map[string]any{
		"namespace":      cl.ns,
		"serviceaccount": ref{cl.sa.Name, cl.sa.UID},
		"pod":            ref{cl.pod.Name, cl.pod.UID},
	}}
	tok, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: kubetest.Issuer, Subject: "system:serviceaccount:" + cl.ns + ":" + cl.sa.Name,
		Audience: jwt.Audience{audience}, IssuedAt: jwt.NewNumericDate(issuedAt),
		NotBefore: jwt.NewNumericDate(issuedAt), Expiry: jwt.NewNumericDate(expiry),
		ID: "forged-" + t.Name(),
	}).Claims(private).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantID(ns, sa string) spiffeid.ID {
	return spiffeid.RequireFromPath(td, "/ns/"+ns+"/sa/"+sa)
}

// TestAttestAndRenew: a pod's token with the controller's audience gets spiffe://<td>/ns/<ns>/sa/<sa>, renewal
// keeps it, and the attestation is counted.
func TestAttestAndRenew(t *testing.T) {
	cl := newCluster(t)
	c := startController(t, cl.srv.Client, k8sattest.Config{Audience: audience})
	src, err := c.attest(t, cl.token(t, "agent", cl.pod, audience))
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := src.GetX509SVID()
	if want := wantID(cl.ns, "agent"); svid.ID != want {
		t.Fatalf("SVID for %v, want %v", svid.ID, want)
	}
	if got := c.counter("ok"); got != 1 {
		t.Fatalf("ok attestations counted %v, want 1", got)
	}
	// Renewal is by the SVID over mTLS, as with a join token: it needs neither the token nor the API server.
	if err := src.Renew(context.Background()); err != nil {
		t.Fatal(err)
	}
	renewed, _ := src.GetX509SVID()
	if renewed.ID != svid.ID || renewed.Certificates[0].SerialNumber.Cmp(svid.Certificates[0].SerialNumber) == 0 {
		t.Fatalf("renewal gave %v serial %v, was %v serial %v", renewed.ID, renewed.Certificates[0].SerialNumber, svid.ID, svid.Certificates[0].SerialNumber)
	}
}

// TestSPIFFEIDTemplate: the ID's path follows spiffeIDTemplate.
func TestSPIFFEIDTemplate(t *testing.T) {
	cl := newCluster(t)
	c := startController(t, cl.srv.Client, k8sattest.Config{Audience: audience, SPIFFEIDTemplate: "/k8s/{namespace}/{serviceAccount}"})
	src, err := c.attest(t, cl.token(t, "agent", cl.pod, audience))
	if err != nil {
		t.Fatal(err)
	}
	svid, _ := src.GetX509SVID()
	if want := spiffeid.RequireFromPath(td, "/k8s/"+cl.ns+"/agent"); svid.ID != want {
		t.Fatalf("SVID for %v, want %v", svid.ID, want)
	}
}

// TestForgedTokenControl shows that a token forged with the API server's key and a valid lifetime is accepted,
// so that TestRefusals' expired one is refused for its expiry and nothing else.
func TestForgedTokenControl(t *testing.T) {
	cl := newCluster(t)
	c := startController(t, cl.srv.Client, k8sattest.Config{Audience: audience})
	now := time.Now()
	if _, err := c.attest(t, cl.forge(t, now.Add(-time.Minute), now.Add(10*time.Minute))); err != nil {
		t.Fatal(err)
	}
}

// TestRefusals: each token is refused with its reason, which the sidecar receives, the log names and the metric
// counts. The API server itself (--service-account-lookup, on by default) rejects the tokens of a deleted service
// account or pod (policy_denied); the attestor's own pod check is what refuses a finished pod, one being deleted
// (which the API server still accepts for a minute) and a token bound to no pod.
func TestRefusals(t *testing.T) {
	cl := newCluster(t)
	ctx := context.Background()
	pods := cl.srv.Client.CoreV1().Pods(cl.ns)
	tests := []struct {
		name string
		// token makes the token to present, changing the cluster as the case needs.
		token  func(t *testing.T) string
		reason *autherr.Reason
		config k8sattest.Config
	}{
		{"another audience", func(t *testing.T) string {
			return cl.token(t, "agent", cl.pod, "some-other-service")
		}, autherr.ErrWrongAudience, k8sattest.Config{}},
		{"the API server's audience", func(t *testing.T) string {
			// What a pod's default token (kube-api-access) is made for: never a credential for the controller.
			return cl.token(t, "agent", cl.pod, kubetest.Issuer)
		}, autherr.ErrWrongAudience, k8sattest.Config{}},
		{"expired", func(t *testing.T) string {
			now := time.Now()
			return cl.forge(t, now.Add(-20*time.Minute), now.Add(-10*time.Minute))
		}, autherr.ErrExpired, k8sattest.Config{}},
		{"deleted service account", func(t *testing.T) string {
			_, pod := cl.createPod(t, "gone", "gone-0")
			tok := cl.token(t, "gone", pod, audience)
			if err := cl.srv.Client.CoreV1().ServiceAccounts(cl.ns).Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			return tok
		}, autherr.ErrDenied, k8sattest.Config{}},
		{"deleted pod", func(t *testing.T) string {
			_, pod := cl.createPod(t, "agent", "deleted-0")
			tok := cl.token(t, "agent", pod, audience)
			if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			return tok
		}, autherr.ErrDenied, k8sattest.Config{}},
		{"finished pod", func(t *testing.T) string {
			_, pod := cl.createPod(t, "agent", "finished-0")
			tok := cl.token(t, "agent", pod, audience)
			pod.Status.Phase = corev1.PodSucceeded
			if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			return tok
		}, autherr.ErrRevoked, k8sattest.Config{}},
		{"pod being deleted", func(t *testing.T) string {
			_, pod := cl.createPod(t, "agent", "deleting-0")
			tok := cl.token(t, "agent", pod, audience)
			pod.Finalizers = []string{"agentauth.io/test-hold"} // keeps it, with its deletionTimestamp set
			if _, err := pods.Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			return tok
		}, autherr.ErrRevoked, k8sattest.Config{}},
		{"not bound to a pod", func(t *testing.T) string {
			return cl.token(t, "agent", nil, audience)
		}, autherr.ErrMismatch, k8sattest.Config{}},
		{"not a JWT", func(*testing.T) string { return "not-a-token" }, autherr.ErrMalformed, k8sattest.Config{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config
			cfg.Audience = audience
			c := startController(t, cl.srv.Client, cfg)
			_, err := c.attest(t, tt.token(t))
			if !errors.Is(err, tt.reason) {
				t.Fatalf("attest: %v, want reason %q", err, tt.reason.Code())
			}
			if got := c.counter(tt.reason.Code()); got != 1 {
				t.Errorf("refusals counted under %q: %v, want 1", tt.reason.Code(), got)
			}
			if n := c.logs.FilterMessage("Kubernetes attestation refused").FilterField(zap.String("reason", tt.reason.Code())).Len(); n != 1 {
				t.Errorf("%d log lines for the refusal, want 1: %v", n, c.logs.All())
			}
		})
	}
}

// TestUnboundTokenAllowed: with allowUnboundTokens, a TokenRequest token bound to no pod attests as its service
// account.
func TestUnboundTokenAllowed(t *testing.T) {
	cl := newCluster(t)
	c := startController(t, cl.srv.Client, k8sattest.Config{Audience: audience, AllowUnboundTokens: true})
	src, err := c.attest(t, cl.token(t, "agent", nil, audience))
	if err != nil {
		t.Fatal(err)
	}
	if svid, _ := src.GetX509SVID(); svid.ID != wantID(cl.ns, "agent") {
		t.Fatalf("SVID for %v", svid.ID)
	}
}

// TestAPIServerUnreachable: with the API server out of reach the sidecar gets Unavailable (and retries), the
// reason upstream_unavailable, and the controller logs an error.
func TestAPIServerUnreachable(t *testing.T) {
	cl := newCluster(t)
	tok := cl.token(t, "agent", cl.pod, audience)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := rest.CopyConfig(cl.srv.Config)
	cfg.Host = "https://" + addr
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := startController(t, client, k8sattest.Config{Audience: audience})
	_, err = c.attest(t, tok)
	if !errors.Is(err, autherr.ErrUpstream) {
		t.Fatalf("attest: %v, want reason %q", err, autherr.ErrUpstream.Code())
	}
	var st interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &st) || st.GRPCStatus().Code() != codes.Unavailable {
		t.Fatalf("attest: %v, want gRPC Unavailable, which the sidecar retries", err)
	}
	if got := c.counter(autherr.ErrUpstream.Code()); got != 1 {
		t.Errorf("counted %v, want 1", got)
	}
	if n := c.logs.FilterLevelExact(zap.ErrorLevel).Len(); n != 1 {
		t.Errorf("%d error lines, want 1", n)
	}
}
