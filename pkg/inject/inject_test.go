package inject

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aymanbagabas/go-udiff"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/agentauth/agentauth/pkg/sidecar"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the injector's output")

const testBundle = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

// testValues are what the chart renders for release "agentauth" in namespace "agentauth".
func testValues() Values {
	return Values{
		Image:       "agentauth/sidecar:0.0.0-test",
		TrustDomain: "cluster.local",
		Resources: Resources{Requests: map[string]string{"cpu": "50m", "memory": "64Mi"},
			Limits: map[string]string{"memory": "256Mi"}},
		Identity: sidecar.IdentityConfig{Controller: &sidecar.ControllerIdentityConfig{
			Address:             "agentauth-issuer.agentauth.svc:8443",
			Bundle:              IdentityDir + "/bundle.pem",
			KubernetesTokenFile: IdentityDir + "/token",
			StateDir:            StateDir,
		}},
		Controller: &sidecar.ControlPlaneConfig{Address: "agentauth-xds.agentauth.svc:8444"},
		Routes: []sidecar.RouteConfig{{Name: "weather", Host: "weather.tools.svc:8080",
			Upstream: "https://weather.tools.svc:8080", ServerID: "spiffe://cluster.local/ns/tools/sa/weather"}},
	}
}

func newTestInjector(t testing.TB) *Injector {
	t.Helper()
	in, err := New(testValues(), func() []byte { return []byte(testBundle) })
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func testPod(annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metaPod,
		ObjectMeta: objectMeta("agent", annotations),
		Spec: corev1.PodSpec{
			ServiceAccountName: "planner",
			Containers:         []corev1.Container{{Name: "agent", Image: "example.org/agent:1"}},
		},
	}
}

const routesWPT = `- name: search
  host: search.tools.svc:8443
  upstream: https://search.tools.svc:8443
`

// goldenCases are one pod per annotation case; testdata/<name>.golden.yaml is the pod after injection.
var goldenCases = []struct {
	name string
	pod  func() *corev1.Pod
}{
	{"inject-true", func() *corev1.Pod { return testPod(map[string]string{AnnotationInject: "true"}) }},
	{"namespace-default", func() *corev1.Pod { return testPod(nil) }},
	{"mode-wpt-routes", func() *corev1.Pod {
		return testPod(map[string]string{AnnotationMode: "wpt", AnnotationRoutes: routesWPT})
	}},
	{"mode-httpsig-routes", func() *corev1.Pod {
		return testPod(map[string]string{AnnotationMode: "httpsig", AnnotationRoutes: `[{name: search, host: "search.tools.svc:8443", upstream: "https://search.tools.svc:8443", signedResponses: true}]`})
	}},
	{"inbound-tool", func() *corev1.Pod {
		p := testPod(map[string]string{AnnotationInboundPort: "8080", AnnotationIngressHost: "weather.tools.svc:8080"})
		p.Name, p.Spec.ServiceAccountName = "weather", "weather"
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
		// The tool has no routes of its own: the default routes still apply (the tool may call others).
		return p
	}},
	{"exclusions", func() *corev1.Pod {
		return testPod(map[string]string{AnnotationExcludePorts: "5432, 6379", AnnotationExcludeCIDRs: "10.96.0.0/12,fd00::/8"})
	}},
	{"own-init-containers", func() *corev1.Pod {
		p := testPod(map[string]string{AnnotationInject: "true"})
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "example.org/migrate:1"}}
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		return p
	}},
}

func TestInjectGolden(t *testing.T) {
	in := newTestInjector(t)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod()
			before := pod.DeepCopy()
			out, err := in.Inject(pod, false)
			if err != nil {
				t.Fatal(err)
			}
			if out == nil {
				t.Fatal("pod left alone, want it injected")
			}
			if !equalPods(pod, before) {
				t.Error("Inject changed its argument; it must mutate a copy")
			}
			got, err := yaml.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", tc.name+".golden.yaml"), got)
			checkInjected(t, out)

			// Re-injection is a no-op.
			again, err := in.Inject(out, false)
			if err != nil || again != nil {
				t.Errorf("injecting the injected pod again = %v, %v; want nil, nil (a no-op)", again, err)
			}
		})
	}
}

// checkInjected checks the invariants every injected pod must meet, whatever its annotations.
func checkInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	ic := pod.Spec.InitContainers
	if len(ic) < 2 || ic[0].Name != RedirectContainer || ic[1].Name != SidecarContainer {
		t.Fatalf("init containers %v: want the redirect step, then the sidecar, before the pod's own", names(ic))
	}
	sc := ic[1]
	if sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the sidecar is not a native sidecar (restartPolicy: Always)")
	}
	if sc.StartupProbe == nil || sc.ReadinessProbe == nil || sc.LivenessProbe == nil {
		t.Error("the sidecar lacks a startup, readiness or liveness probe")
	}
	s := sc.SecurityContext
	if s == nil || s.RunAsNonRoot == nil || !*s.RunAsNonRoot || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem ||
		s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || s.Capabilities == nil ||
		len(s.Capabilities.Drop) != 1 || s.Capabilities.Drop[0] != "ALL" || len(s.Capabilities.Add) != 0 ||
		s.SeccompProfile == nil || s.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("the sidecar's securityContext is not restricted: %+v", s)
	}
	var cfg string
	for _, e := range sc.Env {
		if e.Name == "AGENTAUTH_SIDECAR_CONFIG" {
			cfg = e.Value
		}
	}
	if _, err := sidecar.Parse([]byte(cfg)); err != nil {
		t.Errorf("the sidecar's config does not load: %v", err)
	}
	if pod.Annotations[AnnotationTrustBundle] != testBundle {
		t.Error("the trust bundle annotation is missing")
	}
}

func TestInjectLeavesAlone(t *testing.T) {
	in := newTestInjector(t)
	for _, tc := range []struct {
		name         string
		pod          *corev1.Pod
		requireOptIn bool
	}{
		{"opted out by annotation", testPod(map[string]string{AnnotationInject: "false"}), false},
		{"opted out by label", func() *corev1.Pod {
			p := testPod(nil)
			p.Labels = map[string]string{AnnotationInject: "false"}
			return p
		}(), false},
		{"did not ask, outside an opted-in namespace", testPod(nil), true},
		{"opted out, with other annotations that would be refused", testPod(map[string]string{AnnotationInject: "false", AnnotationMode: "bogus"}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := in.Inject(tc.pod, tc.requireOptIn)
			if err != nil || out != nil {
				t.Errorf("Inject = %v, %v; want the pod left alone", out, err)
			}
		})
	}
	// The pod webhook's opt-in: the label or the annotation.
	p := testPod(nil)
	p.Labels = map[string]string{AnnotationInject: "true"}
	if out, err := in.Inject(p, true); err != nil || out == nil {
		t.Errorf("a pod labelled agentauth.io/inject=true was not injected: %v", err)
	}
}

func TestInjectRefuses(t *testing.T) {
	in := newTestInjector(t)
	uid := int64(DefaultUID)
	for _, tc := range []struct {
		name       string
		pod        *corev1.Pod
		annotation string // the annotation the refusal must name
		want       string
	}{
		{"inject not a boolean", testPod(map[string]string{AnnotationInject: "yes"}), AnnotationInject, `"yes" is not "true" or "false"`},
		{"label and annotation disagree", func() *corev1.Pod {
			p := testPod(map[string]string{AnnotationInject: "true"})
			p.Labels = map[string]string{AnnotationInject: "false"}
			return p
		}(), AnnotationInject, "disagree"},
		{"unknown mode", testPod(map[string]string{AnnotationMode: "bearer"}), AnnotationMode, `"bearer" is not one of mtls, wpt, httpsig`},
		{"unknown annotation", testPod(map[string]string{"agentauth.io/exclude-outbound-port": "5432"}), "agentauth.io/exclude-outbound-port", "unknown annotation"},
		{"routes not YAML", testPod(map[string]string{AnnotationRoutes: "{"}), AnnotationRoutes, "not a YAML list"},
		{"routes unknown key", testPod(map[string]string{AnnotationRoutes: "- {name: a, hots: x}"}), AnnotationRoutes, "field hots not found"},
		{"routes empty", testPod(map[string]string{AnnotationRoutes: "[]"}), AnnotationRoutes, "no routes"},
		{"route invalid", testPod(map[string]string{AnnotationRoutes: "- {name: a, host: a.svc, upstream: http://a.svc}"}), AnnotationRoutes, "egress.routes[0].serverID"},
		{"inbound port not a number", testPod(map[string]string{AnnotationInboundPort: "http", AnnotationIngressHost: "t"}), AnnotationInboundPort, "not a port"},
		{"inbound port without host", testPod(map[string]string{AnnotationInboundPort: "8080"}), AnnotationIngressHost, "required with"},
		{"host without inbound port", testPod(map[string]string{AnnotationIngressHost: "t.svc"}), AnnotationIngressHost, "needs agentauth.io/inbound-port"},
		{"inbound port is the sidecar's", testPod(map[string]string{AnnotationInboundPort: "15006", AnnotationIngressHost: "t"}), AnnotationInboundPort, "own listeners"},
		{"excluded port is the transparent listener", testPod(map[string]string{AnnotationExcludePorts: "15001"}), AnnotationExcludePorts, "transparent listener"},
		{"excluded port malformed", testPod(map[string]string{AnnotationExcludePorts: "5432;6379"}), AnnotationExcludePorts, "not a port"},
		{"excluded CIDR malformed", testPod(map[string]string{AnnotationExcludeCIDRs: "10.0.0.1/8"}), AnnotationExcludeCIDRs, "host bits"},
		{"hostNetwork", func() *corev1.Pod { p := testPod(nil); p.Spec.HostNetwork = true; return p }(), AnnotationInject, "hostNetwork"},
		{"container runs as the sidecar's uid", func() *corev1.Pod {
			p := testPod(nil)
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: &uid}
			return p
		}(), AnnotationInject, `container "agent" runs as uid 1337`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := in.Inject(tc.pod, false)
			if out != nil || !errors.Is(err, ErrRefused) {
				t.Fatalf("Inject = %v, %v; want a refusal", out, err)
			}
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Annotation != tc.annotation {
				t.Errorf("refusal %q names %v, want annotation %s", err, ae, tc.annotation)
			}
			if !strings.Contains(err.Error(), tc.annotation) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refusal %q, want it to name %s and say %q", err, tc.annotation, tc.want)
			}
		})
	}
	// No routes anywhere and no inbound port: the sidecar would do nothing, so the pod is refused.
	v := testValues()
	v.Routes = nil
	bare, err := New(v, func() []byte { return []byte(testBundle) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Inject(testPod(nil), false); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), AnnotationRoutes) {
		t.Errorf("a pod with nothing for the sidecar to do: %v, want a refusal naming %s", err, AnnotationRoutes)
	}
}

func TestNewRefusesValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Values)
		want string
	}{
		{"no image", func(v *Values) { v.Image = "" }, "injection.image: required"},
		{"bad mode", func(v *Values) { v.Mode = "bearer" }, "injection.mode"},
		{"bad quantity", func(v *Values) { v.Resources.Limits["memory"] = "lots" }, "injection.resources.limits.memory"},
		{"bad CIDR", func(v *Values) { v.ExcludeOutboundCIDRs = []string{"10.0.0.0"} }, "injection.excludeOutboundCIDRs[0]"},
		{"no identity", func(v *Values) { v.Identity = sidecar.IdentityConfig{} }, "identity"},
		{"short token", func(v *Values) { v.TokenExpirationSeconds = 60 }, "injection.tokenExpirationSeconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := testValues()
			tc.edit(&v)
			if _, err := New(v, func() []byte { return nil }); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want an error naming %s", err, tc.want)
			}
		})
	}
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
		t.Fatalf("%v (run go test ./pkg/inject -update to write it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs (go test ./pkg/inject -update rewrites it):\n%s", path, udiff.Unified(path, "got", string(want), string(got)))
	}
}

func equalPods(a, b *corev1.Pod) bool {
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return string(x) == string(y)
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}
