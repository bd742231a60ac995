package k8s

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aymanbagabas/go-udiff"
	"go.uber.org/zap/zaptest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/agentauth/agentauth/pkg/controller"
	"github.com/agentauth/agentauth/pkg/inject"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml")

// injectValues are chart values with default routes, so that a pod needs no routes annotation.
const injectValues = `
injector:
  sidecar:
    routes:
      - {name: weather, host: "weather.tools.svc:8080", upstream: "https://weather.tools.svc:8080", serverID: "spiffe://cluster.local/ns/tools/sa/weather"}
`

// fixedBundle stands for the controller's CA in the pods' trust-bundle annotation: fixed, so the golden file is.
const fixedBundle = "-----BEGIN CERTIFICATE-----\nMIIBfixed\n-----END CERTIFICATE-----\n"

// TestInjectorOnAPIServer: the chart's MutatingWebhookConfiguration, pointed at an injector served by this test with
// the injection values the chart renders, in front of a real API server. What the API server stores is what counts.
func TestInjectorOnAPIServer(t *testing.T) {
	srv := kube.Server(t)
	ctx := context.Background()
	r := renderStrict(t, loadChart(t), values(t, injectValues))
	cfg, err := controller.Parse([]byte(r.configMap(t, "controller.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	in, err := inject.New(cfg.Webhook.Injection, func() []byte { return []byte(fixedBundle) })
	if err != nil {
		t.Fatal(err)
	}
	ca := newServingCA(t)
	ws, err := inject.NewServer(ctx, inject.ServerConfig{Listen: "127.0.0.1:0", Injector: in, DNSNames: []string{"localhost"},
		Issue: ca.issue, Log: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })

	// The chart's webhook configuration, with the test's injector as its URL (nothing here resolves Services).
	wh := r.webhook.DeepCopy()
	wh.ResourceVersion = ""
	for i := range wh.Webhooks {
		cc := &wh.Webhooks[i].ClientConfig
		url := "https://" + ws.Addr().String() + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, ca.pem
	}
	whAPI := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := whAPI.Create(ctx, wh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = whAPI.Delete(context.Background(), wh.Name, metav1.DeleteOptions{}) })

	// The chart's policy, so that a pod which asked and reached no webhook is refused rather than run unprotected.
	vapAPI := srv.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies()
	if _, err := vapAPI.Create(ctx, r.policy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vapAPI.Delete(context.Background(), r.policy.Name, metav1.DeleteOptions{}) })
	bindAPI := srv.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings()
	if _, err := bindAPI.Create(ctx, r.binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bindAPI.Delete(context.Background(), r.binding.Name, metav1.DeleteOptions{}) })

	for ns, label := range map[string]string{"inj-agents": "enabled", "inj-plain": "", "inj-optout": "disabled"} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if label != "" {
			n.Labels = map[string]string{"agentauth.io/inject": label}
		}
		if _, err := srv.Client.CoreV1().Namespaces().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller-manager runs here to create it; pods need their service account.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		if _, err := srv.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create := func(ns, name string, labels, annotations map[string]string) (*corev1.Pod, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "example.org/agent:1"}}}}
		return srv.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}

	t.Run("annotated pod is stored with the sidecar and the init step", func(t *testing.T) {
		p, err := create("inj-agents", "annotated", nil, map[string]string{inject.AnnotationInject: "true", inject.AnnotationMode: "wpt"})
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, "testdata/apiserver-injected.golden.yaml", injectedParts(t, p))
		// Reinvoked or not, the API server stored one sidecar.
		if n := countInit(p, inject.SidecarContainer); n != 1 {
			t.Errorf("%d sidecars stored, want 1", n)
		}

		// Re-injection is a no-op: the injected pod, created again, is stored with the same additions.
		again := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "annotated-again", Namespace: p.Namespace,
			Annotations: p.Annotations}, Spec: *p.Spec.DeepCopy()}
		again.Spec.NodeName = ""
		stored, err := srv.Client.CoreV1().Pods(p.Namespace).Create(ctx, again, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := injectedParts(t, stored), injectedParts(t, p); string(got) != string(want) {
			t.Errorf("re-injection changed the pod:\n%s", udiff.Unified("first", "again", string(want), string(got)))
		}
	})

	t.Run("pod labelled in a namespace not opted in is injected", func(t *testing.T) {
		p, err := create("inj-plain", "labelled", map[string]string{inject.AnnotationInject: "true"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if countInit(p, inject.SidecarContainer) != 1 || countInit(p, inject.RedirectContainer) != 1 {
			t.Errorf("init containers %v, want the redirect step and the sidecar", initNames(p))
		}
	})

	for i, tc := range []struct {
		name, ns            string
		labels, annotations map[string]string
	}{
		{"un-annotated pod in a namespace not opted in", "inj-plain", nil, nil},
		{"un-annotated pod in an opted-out namespace", "inj-optout", nil, nil},
		{"pod opting out by annotation in an opted-in namespace", "inj-agents", nil, map[string]string{inject.AnnotationInject: "false"}},
		{"pod opting out by label in an opted-in namespace", "inj-agents", map[string]string{inject.AnnotationInject: "false"}, nil},
	} {
		t.Run(tc.name+" stays untouched", func(t *testing.T) {
			p, err := create(tc.ns, fmt.Sprintf("untouched-%d", i), tc.labels, tc.annotations)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Spec.InitContainers) != 0 || p.Annotations[inject.AnnotationStatus] != "" {
				t.Errorf("pod was changed: init containers %v, annotations %v", initNames(p), p.Annotations)
			}
		})
	}

	// Admission policies take effect once the API server has compiled them: until the first refusal, a pod that got
	// through is deleted and the request made again.
	for i, tc := range []struct {
		name, ns            string
		labels, annotations map[string]string
	}{
		{"annotated pod in a namespace not opted in (a webhook cannot select by annotation)", "inj-plain", nil,
			map[string]string{inject.AnnotationInject: "true"}},
		{"pod asking by label in an opted-out namespace", "inj-optout", map[string]string{inject.AnnotationInject: "true"}, nil},
		{"pod asking by both in an opted-out namespace", "inj-optout", map[string]string{inject.AnnotationInject: "true"},
			map[string]string{inject.AnnotationInject: "true"}},
	} {
		t.Run(tc.name+" is refused, not run unprotected", func(t *testing.T) {
			var err error
			deadline := time.Now().Add(time.Minute)
			for n := 0; ; n++ {
				name := fmt.Sprintf("unserved-%d-%d", i, n)
				if _, err = create(tc.ns, name, tc.labels, tc.annotations); err != nil || time.Now().After(deadline) {
					break
				}
				_ = srv.Client.CoreV1().Pods(tc.ns).Delete(ctx, name, metav1.DeleteOptions{})
				time.Sleep(100 * time.Millisecond)
			}
			if err == nil {
				t.Fatal("the API server stored a pod that asked for injection and was not injected")
			}
			for _, want := range []string{"ValidatingAdmissionPolicy", "require-injection", `agentauth.io/inject: "true" asks for the agentauth sidecar`,
				"label its namespace agentauth.io/inject=enabled"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("refusal %q does not say %q", err, want)
				}
			}
		})
	}

	t.Run("bad annotation is refused with the webhook's message", func(t *testing.T) {
		_, err := create("inj-agents", "bad", nil, map[string]string{inject.AnnotationMode: "bearer"})
		if err == nil {
			t.Fatal("the API server stored a pod with agentauth.io/mode: bearer")
		}
		for _, want := range []string{`admission webhook "namespace.inject.agentauth.io" denied the request`,
			`annotation agentauth.io/mode: "bearer" is not one of mtls, wpt, httpsig`} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
	})
}

// TestCABundleKeeperOnAPIServer: as the controller's ServiceAccount, with the chart's RBAC, the keeper writes the
// controller's CA into the chart's webhook configuration, and puts it back when something empties it (as a
// helm upgrade would).
func TestCABundleKeeperOnAPIServer(t *testing.T) {
	srv, r := installChart(t)
	ctx := context.Background()
	whAPI := srv.Client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	wh := r.webhook.DeepCopy()
	if _, err := whAPI.Create(ctx, wh, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = whAPI.Delete(context.Background(), wh.Name, metav1.DeleteOptions{}) })
	as, err := kubernetes.NewForConfig(srv.ImpersonateServiceAccount(namespace, r.deploy.Spec.Template.Spec.ServiceAccountName))
	if err != nil {
		t.Fatal(err)
	}
	bundle := newServingCA(t).pem
	k := &inject.BundleKeeper{Client: as, Name: wh.Name, Bundle: func() []byte { return bundle }, Log: zaptest.NewLogger(t)}
	check := func() {
		t.Helper()
		if wrote, err := k.Sync(ctx); err != nil || !wrote {
			t.Fatalf("Sync as the controller = %v, %v; want a write", wrote, err)
		}
		got, err := whAPI.Get(ctx, wh.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range got.Webhooks {
			if string(w.ClientConfig.CABundle) != string(bundle) {
				t.Errorf("webhook %s: caBundle not the controller's CA", w.Name)
			}
		}
		if wrote, err := k.Sync(ctx); err != nil || wrote {
			t.Errorf("second Sync = %v, %v; want nothing to write", wrote, err)
		}
	}
	check()
	cur, err := whAPI.Get(ctx, wh.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range cur.Webhooks {
		cur.Webhooks[i].ClientConfig.CABundle = nil
	}
	if _, err := whAPI.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check()
}

// injectedParts is what the injector put into a stored pod (with the API server's defaults), and nothing that
// varies between runs: its annotations, its init containers and volumes of its own.
func injectedParts(t *testing.T, p *corev1.Pod) []byte {
	t.Helper()
	parts := struct {
		Annotations    map[string]string  `json:"annotations"`
		InitContainers []corev1.Container `json:"initContainers"`
		Volumes        []corev1.Volume    `json:"volumes"`
	}{Annotations: map[string]string{}}
	for k, v := range p.Annotations {
		if strings.HasPrefix(k, inject.Prefix) {
			parts.Annotations[k] = v
		}
	}
	for _, c := range p.Spec.InitContainers {
		if strings.HasPrefix(c.Name, "agentauth-") {
			// The API server adds the service account's token volume, whose name is random, to every container.
			c.VolumeMounts = filterMounts(c.VolumeMounts)
			parts.InitContainers = append(parts.InitContainers, c)
		}
	}
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, "agentauth-") {
			parts.Volumes = append(parts.Volumes, v)
		}
	}
	out, err := yaml.Marshal(parts)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func filterMounts(ms []corev1.VolumeMount) []corev1.VolumeMount {
	var out []corev1.VolumeMount
	for _, m := range ms {
		if strings.HasPrefix(m.Name, "agentauth-") {
			out = append(out, m)
		}
	}
	return out
}

func countInit(p *corev1.Pod, name string) int {
	n := 0
	for _, c := range p.Spec.InitContainers {
		if c.Name == name {
			n++
		}
	}
	return n
}

func initNames(p *corev1.Pod) []string {
	var names []string
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name)
	}
	return names
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./test/k8s -run TestInjectorOnAPIServer -update writes it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (-update rewrites it):\n%s", filepath.Base(path), udiff.Unified(path, "stored", string(want), string(got)))
	}
}

// servingCA issues the test injector's certificate, for localhost and 127.0.0.1 (the URL the API server dials).
type servingCA struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newServingCA(t *testing.T) *servingCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "injector test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	return &servingCA{root: root, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *servingCA) issue(_ context.Context, pub crypto.PublicKey, names []string, ttl time.Duration) ([]*x509.Certificate, error) {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: names, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(ttl), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, pub, ca.key)
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	return []*x509.Certificate{c}, err
}
