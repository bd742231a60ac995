package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/agentauth/agentauth/pkg/inject"
)

const webhookBase = `trustDomain: example.org
dataDir: %s
issuer: {listen: 127.0.0.1:0}
xds: {listen: 127.0.0.1:0}
admin: {socket: %s}
ops: {listen: 127.0.0.1:0}
`

const webhookSection = `webhook:
  listen: 127.0.0.1:0
  dnsNames: [agentauth-webhook.agentauth.svc]
  injection:
    image: agentauth/sidecar:test
    identity:
      controller:
        address: agentauth-issuer.agentauth.svc:8443
        bundle: /var/run/agentauth/identity/bundle.pem
        kubernetesTokenFile: /var/run/agentauth/identity/token
    routes:
      - {name: weather, host: weather.tools.svc, upstream: "https://weather.tools.svc", serverID: "spiffe://example.org/ns/tools/sa/weather"}
`

// TestControllerServesWebhook: with a webhook section the controller serves the injector over HTTPS with a
// certificate for the Service's DNS name from its own CA (bundle.pem verifies it, as the API server's caBundle
// would), and injected pods carry that CA as their trust bundle.
func TestControllerServesWebhook(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Parse(fmt.Appendf(nil, webhookBase+webhookSection, filepath.Join(dir, "data"), filepath.Join(dir, "admin.sock")))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := New(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	bundle, err := os.ReadFile(filepath.Join(cfg.DataDir, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "agentauth-webhook.agentauth.svc"}}}
	pod, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent", Annotations: map[string]string{inject.AnnotationInject: "true"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent"}}}})
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: pod}}})
	resp, err := client.Post("https://"+find[*webhookServer](c).srv.Addr().String()+inject.PathNamespace, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("calling the webhook as the API server would: %v", err)
	}
	defer resp.Body.Close()
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || rev.Response == nil || !rev.Response.Allowed {
		t.Fatalf("answer %+v, %v: want allowed", rev.Response, err)
	}
	var ops []struct {
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(rev.Response.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, op := range ops {
		if op.Path == "/metadata/annotations/agentauth.io~1trust-bundle" && op.Value == string(bundle) {
			found = true
		}
	}
	if !found {
		t.Errorf("the patch does not set the trust bundle to bundle.pem: %s", rev.Response.Patch)
	}
}

func TestWebhookConfigNamesTheField(t *testing.T) {
	base := fmt.Sprintf(webhookBase, "/d", "/run/a.sock")
	if _, err := Parse([]byte(base + webhookSection)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ from, to, want string }{
		{"listen: 127.0.0.1:0\n  dnsNames", "listen: 9443\n  dnsNames", "webhook.listen"},
		{"dnsNames: [agentauth-webhook.agentauth.svc]", "dnsNames: [Agentauth_Webhook]", "webhook.dnsNames[0]"},
		{"  dnsNames: [agentauth-webhook.agentauth.svc]\n", "", "webhook.dnsNames: required"},
		{"image: agentauth/sidecar:test", `image: ""`, "webhook.injection.image: required"},
		{"image: agentauth/sidecar:test", "image: x\n    mode: bearer", "webhook.injection.mode"},
		{"address: agentauth-issuer.agentauth.svc:8443", `address: ""`, "identity.controller.address"},
		{"  dnsNames: [agentauth-webhook.agentauth.svc]\n",
			"  certManager: {cert: /tls/tls.crt, key: /tls/tls.key}\n  caBundle: {webhookConfiguration: agentauth-webhook}\n",
			"webhook.caBundle: leave it out with certManager"},
	} {
		section := strings.Replace(webhookSection, tt.from, tt.to, 1)
		if _, err := Parse([]byte(base + section)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q -> %q: %v, want an error naming %s", tt.from, tt.to, err, tt.want)
		}
	}
}
