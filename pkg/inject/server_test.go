package inject

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// testIssuer is a CA for the webhook's serving certificates.
type testIssuer struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &testIssuer{root: root, key: key}
}

func (ti *testIssuer) issue(_ context.Context, pub crypto.PublicKey, names []string, ttl time.Duration) ([]*x509.Certificate, error) {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, DNSNames: names, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(ttl), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ti.root, pub, ti.key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	return []*x509.Certificate{c}, err
}

const webhookDNS = "agentauth-webhook.agentauth.svc"

// TestServerRotates: the API server's view — HTTPS verified against the CA for the Service's DNS name — answers
// an AdmissionReview, and the certificate is renewed at half its lifetime while serving.
func TestServerRotates(t *testing.T) {
	ti := newTestIssuer(t)
	s, err := NewServer(context.Background(), ServerConfig{Listen: "127.0.0.1:0", Injector: newTestInjector(t),
		DNSNames: []string{webhookDNS}, Issue: ti.issue, CertTTL: 4 * time.Second, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	roots := x509.NewCertPool()
	roots.AddCert(ti.root)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: webhookDNS}}}
	served := func() *x509.Certificate {
		raw, _ := json.Marshal(testPod(map[string]string{AnnotationInject: "true"}))
		body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}})
		resp, err := client.Post("https://"+s.Addr().String()+PathNamespace, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || rev.Response == nil || !rev.Response.Allowed || len(rev.Response.Patch) == 0 {
			t.Fatalf("answer %+v, %v: want the pod injected", rev.Response, err)
		}
		client.CloseIdleConnections()
		return resp.TLS.PeerCertificates[0]
	}
	first := served()
	deadline := time.Now().Add(60 * time.Second)
	for served().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the serving certificate was not renewed")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestBundleKeeper(t *testing.T) {
	client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "agentauth-webhook"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "namespace.inject.agentauth.io"}, {Name: "pod.inject.agentauth.io"}},
	})
	bundle := []byte("CA 1")
	k := &BundleKeeper{Client: client, Name: "agentauth-webhook", Bundle: func() []byte { return bundle }, Log: zaptest.NewLogger(t)}
	check := func(wantWrote bool) {
		t.Helper()
		wrote, err := k.Sync(context.Background())
		if err != nil || wrote != wantWrote {
			t.Fatalf("Sync = %v, %v; want %v", wrote, err, wantWrote)
		}
		got, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "agentauth-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range got.Webhooks {
			if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
				t.Errorf("webhook %s caBundle %q, want %q", w.Name, w.ClientConfig.CABundle, bundle)
			}
		}
	}
	check(true)
	check(false) // current: no write
	bundle = []byte("CA 2")
	check(true) // a new CA reaches the configuration
	k.Name = "missing"
	if _, err := k.Sync(context.Background()); err == nil {
		t.Error("a missing webhook configuration was not reported")
	}
}

// TestBundleKeeperValidating: the ValidatingWebhookConfiguration of the CedarPolicy objects is kept too, also
// while the mutating one cannot be read.
func TestBundleKeeperValidating(t *testing.T) {
	client := fake.NewClientset(&admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "agentauth-webhook"},
		Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "cedarpolicy.validate.agentauth.io"}},
	})
	bundle := []byte("CA 1")
	k := &BundleKeeper{Client: client, Name: "missing", Validating: "agentauth-webhook", Bundle: func() []byte { return bundle },
		Log: zaptest.NewLogger(t)}
	for _, wantWrote := range []bool{true, false} {
		wrote, err := k.Sync(context.Background())
		if err == nil || !strings.Contains(err.Error(), "MutatingWebhookConfiguration missing") || wrote != wantWrote {
			t.Fatalf("Sync = %v, %v; want %v and the missing mutating configuration reported", wrote, err, wantWrote)
		}
		got, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), "agentauth-webhook", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Webhooks[0].ClientConfig.CABundle, bundle) {
			t.Fatalf("caBundle %q, want %q", got.Webhooks[0].ClientConfig.CABundle, bundle)
		}
	}
}
