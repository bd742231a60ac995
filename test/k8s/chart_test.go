package k8s

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/agentauth/agentauth/internal/testproc"
	"github.com/agentauth/agentauth/pkg/controller"
)

const (
	chartDir    = "../../charts/agentauth"
	releaseName = "agentauth"
	namespace   = "agentauth-system"
	// kubeVersion is the API server the chart is rendered for: the one test/k8s/kube-apiserver.sh builds.
	kubeVersion = "v1.37.2"
)

// combinations are the values the chart is linted and rendered with: the defaults, and each feature that changes
// what is rendered.
var combinations = []struct {
	name   string
	values string
}{
	{"defaults", ``},
	{"cert-manager", `
injector:
  certManager: {enabled: true}
`},
	{"cert-manager with an issuer", `
injector:
  certManager: {enabled: true, issuerRef: {name: corp-ca, kind: ClusterIssuer}}
`},
	{"spire socket", `
spire: {enabled: true, socketPath: /run/spire/sockets/agent.sock}
`},
	{"replicas 3", `
controller: {replicas: 3}
`},
	{"namespace allow-list", `
injector: {namespaces: [agents, tools]}
`},
	{"state in a file, one replica", `
controller: {replicas: 1, state: {backend: bbolt}}
`},
	{"one replica, no token service, no injector, no CRDs", `
controller: {replicas: 1, tokenService: {enabled: false}}
injector: {enabled: false}
crds: {install: false}
`},
	{"ssf from SSFTransmitter objects only, state in a file", `
controller: {replicas: 1, state: {backend: bbolt}, ssf: {enabled: true}}
`},
	{"ssf, private registry, pinned digest", `
image: {registry: registry.example.com/platform/, controllerDigest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", pullSecrets: [regcred]}
controller:
  ssf:
    enabled: true
    transmitters:
      - {issuer: https://idp.example.com, audience: [https://agentauth.example.org], jwksURL: https://idp.example.com/jwks}
  extraConfig: {issuer: {rateLimit: {requestsPerSecond: 10, burst: 40}}}
`},
}

func values(t *testing.T, doc string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("test values: %v", err)
	}
	return v
}

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// render is `helm template --include-crds --kube-version kubeVersion`, through the Helm Go library.
func render(t *testing.T, c *chart.Chart, vals map[string]any) (*release.Release, error) {
	t.Helper()
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true
	install.ReleaseName = releaseName
	install.Namespace = namespace
	install.IncludeCRDs = true
	install.KubeVersion = kv
	r, err := install.Run(c, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := r.(*release.Release)
	if !ok {
		t.Fatalf("Install.Run returned a %T", r)
	}
	return rel, nil
}

// certManagerObject is the part of cert-manager's Issuer and Certificate the chart sets; cert-manager's Go types
// are not a dependency, so these stand in for them (strictly: a field not listed here fails the test).
type certManagerObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef *struct {
			Name  string `json:"name"`
			Kind  string `json:"kind"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef,omitempty"`
	} `json:"spec"`
}

// newObject returns an empty object of the Go type for apiVersion and kind: every kind the chart renders is listed,
// so that a new one needs a type here too.
func newObject(apiVersion, kind string) (any, bool) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "rbac.authorization.k8s.io/v1 ClusterRole", "rbac.authorization.k8s.io/v1 Role":
		if kind == "Role" {
			return &rbacv1.Role{}, true
		}
		return &rbacv1.ClusterRole{}, true
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, true
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}, true
	case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
		return &admissionv1.MutatingWebhookConfiguration{}, true
	case "admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration":
		return &admissionv1.ValidatingWebhookConfiguration{}, true
	case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy":
		return &admissionv1.ValidatingAdmissionPolicy{}, true
	case "admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding":
		return &admissionv1.ValidatingAdmissionPolicyBinding{}, true
	case "apiextensions.k8s.io/v1 CustomResourceDefinition":
		return &apiextv1.CustomResourceDefinition{}, true
	case "cert-manager.io/v1 Issuer", "cert-manager.io/v1 Certificate":
		return &certManagerObject{}, true
	}
	return nil, false
}

// decodeStrict decodes every YAML document of manifest into its Go type; an unknown or duplicated field, an
// unknown kind or a value of the wrong type is an error.
func decodeStrict(manifest string) ([]any, error) {
	var objs []any
	for i, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		obj, ok := newObject(tm.APIVersion, tm.Kind)
		if !ok {
			return nil, fmt.Errorf("document %d: no Go type for %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("document %d (%s): %w\n%s", i, tm.Kind, err, doc)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func TestChartLint(t *testing.T) {
	for _, tc := range combinations {
		t.Run(tc.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			res := lint.Run([]string{chartDir}, values(t, tc.values))
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("lint errors: %v", res.Errors)
			}
		})
	}
}

// rendered is one combination's objects, by kind.
type rendered struct {
	rel      *release.Release
	objs     []any
	configs  []*corev1.ConfigMap
	deploy   *appsv1.Deployment
	pdb      *policyv1.PodDisruptionBudget
	services []*corev1.Service
	webhook  *admissionv1.MutatingWebhookConfiguration
	validate *admissionv1.ValidatingWebhookConfiguration // the CedarPolicy webhook
	policy   *admissionv1.ValidatingAdmissionPolicy
	binding  *admissionv1.ValidatingAdmissionPolicyBinding
	crds     []*apiextv1.CustomResourceDefinition
	roles    []rbacv1.PolicyRule
	nsRoles  []rbacv1.PolicyRule // those of the Role in the release's namespace (also in roles)
	certs    []*certManagerObject
}

func renderStrict(t *testing.T, c *chart.Chart, vals map[string]any) rendered {
	t.Helper()
	rel, err := render(t, c, vals)
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	objs, err := decodeStrict(rel.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	r := rendered{rel: rel, objs: objs}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ConfigMap:
			r.configs = append(r.configs, o)
		case *appsv1.Deployment:
			r.deploy = o
		case *policyv1.PodDisruptionBudget:
			r.pdb = o
		case *corev1.Service:
			r.services = append(r.services, o)
		case *admissionv1.MutatingWebhookConfiguration:
			r.webhook = o
		case *admissionv1.ValidatingWebhookConfiguration:
			r.validate = o
		case *admissionv1.ValidatingAdmissionPolicy:
			r.policy = o
		case *admissionv1.ValidatingAdmissionPolicyBinding:
			r.binding = o
		case *apiextv1.CustomResourceDefinition:
			r.crds = append(r.crds, o)
		case *rbacv1.ClusterRole:
			r.roles = append(r.roles, o.Rules...)
		case *rbacv1.Role:
			r.roles = append(r.roles, o.Rules...)
			r.nsRoles = append(r.nsRoles, o.Rules...)
		case *certManagerObject:
			r.certs = append(r.certs, o)
		}
	}
	if r.deploy == nil {
		t.Fatal("no Deployment rendered")
	}
	return r
}

func (r rendered) configMap(t *testing.T, key string) string {
	t.Helper()
	for _, cm := range r.configs {
		if v, ok := cm.Data[key]; ok {
			return v
		}
	}
	t.Fatalf("no ConfigMap holds %s", key)
	return ""
}

func TestChartTemplate(t *testing.T) {
	c := loadChart(t)
	for _, tc := range combinations {
		t.Run(tc.name, func(t *testing.T) {
			r := renderStrict(t, c, values(t, tc.values))
			checkNamespaced(t, r)
			checkDeployment(t, r, c.Metadata.AppVersion)
			checkControllerConfig(t, r)
			checkRBAC(t, r, !strings.Contains(tc.values, "backend: bbolt"))
			if !strings.Contains(r.rel.Info.Notes, `agentauth.io/inject: "true"`) && r.webhook != nil {
				t.Errorf("NOTES.txt does not say how to annotate a pod:\n%s", r.rel.Info.Notes)
			}
		})
	}
}

// checkNamespaced: every namespaced object is in the release's namespace.
func checkNamespaced(t *testing.T, r rendered) {
	for _, o := range r.objs {
		var meta metav1.ObjectMeta
		switch o := o.(type) {
		case *corev1.ConfigMap:
			meta = o.ObjectMeta
		case *corev1.Service:
			meta = o.ObjectMeta
		case *corev1.ServiceAccount:
			meta = o.ObjectMeta
		case *appsv1.Deployment:
			meta = o.ObjectMeta
		case *rbacv1.Role:
			meta = o.ObjectMeta
		case *certManagerObject:
			meta = o.Metadata
		default:
			continue
		}
		if meta.Namespace != namespace {
			t.Errorf("%T %s in namespace %q, want %q", o, meta.Name, meta.Namespace, namespace)
		}
	}
}

func checkDeployment(t *testing.T, r rendered, appVersion string) {
	d := r.deploy
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	if !strings.HasSuffix(ctr.Image, "agentauth/controller:"+appVersion) && !strings.Contains(ctr.Image, "@sha256:") {
		t.Errorf("image %q does not follow appVersion %s", ctr.Image, appVersion)
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", ctr.LivenessProbe, "/healthz"}, {"readiness", ctr.ReadinessProbe, "/readyz"}, {"startup", ctr.StartupProbe, "/healthz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "ops" {
			t.Errorf("%s probe %+v, want GET %s on ops", p.name, p.probe, p.path)
		}
	}
	sc, psc := ctr.SecurityContext, spec.SecurityContext
	switch {
	case sc == nil || psc == nil:
		t.Fatal("no securityContext")
	case psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot not set")
	case psc.RunAsUser == nil || *psc.RunAsUser == 0:
		t.Error("runAsUser not a non-root uid")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("root filesystem writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation not false")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want drop ALL, add none", sc.Capabilities)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("seccomp not RuntimeDefault")
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", ctr.Resources)
	}
	replicas := int32(0)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	switch {
	case replicas > 1 && r.pdb == nil:
		t.Errorf("%d replicas without a PodDisruptionBudget", replicas)
	case replicas <= 1 && r.pdb != nil:
		t.Error("a PodDisruptionBudget for a single replica blocks every drain")
	case r.pdb != nil && !equalSelector(r.pdb.Spec.Selector, d.Spec.Selector):
		t.Error("the PodDisruptionBudget does not select the controller's pods")
	}
	ports := map[string]bool{}
	for _, p := range ctr.Ports {
		ports[p.Name] = true
	}
	for _, s := range r.services {
		if !equalLabels(s.Spec.Selector, d.Spec.Selector.MatchLabels) {
			t.Errorf("Service %s selects %v, not the controller's pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			if !ports[p.TargetPort.String()] {
				t.Errorf("Service %s targets port %s, which the container does not name", s.Name, p.TargetPort.String())
			}
		}
	}
}

func equalSelector(a, b *metav1.LabelSelector) bool {
	return a != nil && b != nil && equalLabels(a.MatchLabels, b.MatchLabels) && len(a.MatchExpressions) == 0 && len(b.MatchExpressions) == 0
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkControllerConfig: the rendered controller.yaml is what the controller accepts: controller.Load is
// `controller -config FILE -check`.
func checkControllerConfig(t *testing.T, r rendered) {
	path := filepath.Join(t.TempDir(), "controller.yaml")
	if err := os.WriteFile(path, []byte(r.configMap(t, "controller.yaml")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := controller.Load(path)
	if err != nil {
		t.Fatalf("rendered controller.yaml fails the controller's check: %v\n%s", err, r.configMap(t, "controller.yaml"))
	}
	// The config's paths are where the Deployment mounts writable volumes (the root filesystem is read-only).
	mounts := map[string]bool{}
	for _, m := range r.deploy.Spec.Template.Spec.Containers[0].VolumeMounts {
		mounts[m.MountPath] = !m.ReadOnly
	}
	for field, p := range map[string]string{"dataDir": cfg.DataDir, "admin.socket": cfg.Admin.Socket} {
		if !mounts[filepath.Dir(p)] {
			t.Errorf("%s %s is not in a writable volume", field, p)
		}
	}
}

// checkRBAC: least privilege, checked by shape: no wildcards, Secrets and the webhook configuration only by name,
// and the verbs the controller needs.
func checkRBAC(t *testing.T, r rendered, wantState bool) {
	has := func(group, resource, verb string) bool {
		for _, rule := range r.roles {
			if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) {
				return true
			}
		}
		return false
	}
	// With controller.state.backend kubernetes, the Role in the release's namespace lets the controller keep its
	// records as Secrets there (pkg/store/kubestore): the one rule on Secrets not limited to names.
	stateRule := func(rule rbacv1.PolicyRule) bool {
		return slices.Equal(rule.Resources, []string{"secrets"}) && len(rule.ResourceNames) == 0 &&
			slices.Equal(rule.Verbs, []string{"get", "list", "watch", "update", "delete"})
	}
	if got := slices.ContainsFunc(r.nsRoles, stateRule); got != wantState {
		t.Errorf("Role has the rule for the state's Secrets: %v; want %v", got, wantState)
	}
	if slices.ContainsFunc(r.roles, stateRule) && !slices.ContainsFunc(r.nsRoles, stateRule) {
		t.Error("a ClusterRole lists Secrets")
	}
	// Without it, SSFTransmitter objects need their Secrets followed: list and watch in the namespace, nothing more.
	objectsRule := func(rule rbacv1.PolicyRule) bool {
		return slices.Equal(rule.Resources, []string{"secrets"}) && len(rule.ResourceNames) == 0 &&
			slices.Equal(rule.Verbs, []string{"list", "watch"})
	}
	wantObjects := !wantState && strings.Contains(r.configMap(t, "controller.yaml"), "transmitterObjects")
	if got := slices.ContainsFunc(r.nsRoles, objectsRule); got != wantObjects {
		t.Errorf("Role has the rule for SSFTransmitter Secrets: %v; want %v", got, wantObjects)
	}
	if slices.ContainsFunc(r.roles, objectsRule) && !slices.ContainsFunc(r.nsRoles, objectsRule) {
		t.Error("a ClusterRole lists Secrets")
	}
	for _, rule := range r.roles {
		if wantState && stateRule(rule) || wantObjects && objectsRule(rule) {
			continue
		}
		for _, s := range slices.Concat(rule.APIGroups, rule.Resources, rule.Verbs, rule.ResourceNames) {
			if strings.Contains(s, "*") {
				t.Errorf("wildcard in rule %+v", rule)
			}
		}
		named := slices.Contains(rule.Resources, "secrets") && !slices.Equal(rule.Verbs, []string{"create"}) ||
			slices.Contains(rule.Resources, "mutatingwebhookconfigurations") ||
			slices.Contains(rule.Resources, "validatingwebhookconfigurations")
		if named && len(rule.ResourceNames) == 0 {
			t.Errorf("rule %+v is not limited to named objects", rule)
		}
		if slices.Contains(rule.Resources, "secrets") && (slices.Contains(rule.Verbs, "list") || slices.Contains(rule.Verbs, "delete")) {
			t.Errorf("rule %+v lists or deletes Secrets", rule)
		}
	}
	for _, want := range [][3]string{
		{"authentication.k8s.io", "tokenreviews", "create"},
		{"", "pods", "get"}, {"", "pods", "list"}, {"", "pods", "watch"},
		{"coordination.k8s.io", "leases", "create"}, {"coordination.k8s.io", "leases", "update"},
		{"agentauth.io", "cedarpolicies", "watch"}, {"agentauth.io", "ssftransmitters", "watch"},
		{"agentauth.io", "cedarpolicies/status", "update"},
	} {
		if !has(want[0], want[1], want[2]) {
			t.Errorf("no rule lets the controller %s %s.%s", want[2], want[1], want[0])
		}
	}
	if r.webhook != nil {
		managed := r.webhook.Annotations["cert-manager.io/inject-ca-from"] == ""
		if got := has("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "patch"); got != managed {
			t.Errorf("may patch its webhook configuration: %v; the controller manages the caBundle: %v", got, managed)
		}
	}
	if r.validate != nil {
		managed := r.validate.Annotations["cert-manager.io/inject-ca-from"] == ""
		if got := has("admissionregistration.k8s.io", "validatingwebhookconfigurations", "update"); got != managed {
			t.Errorf("may update its CedarPolicy webhook configuration: %v; the controller manages the caBundle: %v", got, managed)
		}
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// TestChartControllerCheck runs the controller binary's own -check on the controller.yaml the default values render
// (and those with SSF on, its transmitters from SSFTransmitter objects only), as the container would read it.
func TestChartControllerCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/controller")
	}
	root, err := testproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, cleanup, err := testproc.Build(root, "./cmd/controller")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	for _, vals := range []string{"", "controller: {ssf: {enabled: true}}"} {
		r := renderStrict(t, loadChart(t), values(t, vals))
		path := filepath.Join(t.TempDir(), "controller.yaml")
		if err := os.WriteFile(path, []byte(r.configMap(t, "controller.yaml")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(filepath.Join(dir, "controller"), "-config", path, "-check").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "config OK") {
			t.Fatalf("controller -check of the values %q: %v\n%s", vals, err, out)
		}
	}
}

func TestChartWebhook(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name   string
		values string
		// wantNamespaces: the namespace selector of the first webhook, as "key op values".
		wantNamespaces string
		certManager    bool
	}{
		{"defaults", ``, "agentauth.io/inject In [enabled]", false},
		{"allow-list", `injector: {namespaces: [agents, tools]}`, "kubernetes.io/metadata.name In [agents tools]", false},
		{"cert-manager", `injector: {certManager: {enabled: true}}`, "agentauth.io/inject In [enabled]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderStrict(t, c, values(t, tc.values))
			w := r.webhook
			if w == nil {
				t.Fatal("no MutatingWebhookConfiguration")
			}
			if len(w.Webhooks) != 2 {
				t.Fatalf("%d webhooks, want the namespace one and the pod-label one", len(w.Webhooks))
			}
			for _, h := range w.Webhooks {
				if h.FailurePolicy == nil || *h.FailurePolicy != admissionv1.Fail {
					t.Errorf("%s: failurePolicy %v, want Fail", h.Name, deref(h.FailurePolicy))
				}
				if h.SideEffects == nil || *h.SideEffects != admissionv1.SideEffectClassNone {
					t.Errorf("%s: sideEffects %v, want None", h.Name, deref(h.SideEffects))
				}
				if h.TimeoutSeconds == nil || *h.TimeoutSeconds > 10 {
					t.Errorf("%s: timeout %v, want short", h.Name, deref(h.TimeoutSeconds))
				}
				if h.ObjectSelector == nil || h.NamespaceSelector == nil {
					t.Errorf("%s: no object or namespace selector", h.Name)
				}
				svc := h.ClientConfig.Service
				if svc == nil || svc.Namespace != namespace || !slices.ContainsFunc(r.services, func(s *corev1.Service) bool { return s.Name == svc.Name }) {
					t.Errorf("%s: service %+v is not one the chart renders", h.Name, svc)
				}
				if len(h.ClientConfig.CABundle) != 0 {
					t.Errorf("%s: a caBundle in the chart; the controller or cert-manager writes it", h.Name)
				}
				never := false
				for _, e := range h.NamespaceSelector.MatchExpressions {
					if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpNotIn &&
						slices.Contains(e.Values, namespace) && slices.Contains(e.Values, "kube-system") {
						never = true
					}
				}
				if !never {
					t.Errorf("%s: kube-system and the controller's own namespace are not excluded: %+v", h.Name, h.NamespaceSelector)
				}
			}
			first := w.Webhooks[0].NamespaceSelector.MatchExpressions[0]
			if got := fmt.Sprintf("%s %s %v", first.Key, first.Operator, first.Values); got != tc.wantNamespaces {
				t.Errorf("namespace selector %q, want %q", got, tc.wantNamespaces)
			}
			if r.policy == nil || r.binding == nil || r.binding.Spec.PolicyName != r.policy.Name ||
				!slices.Equal(r.binding.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
				t.Errorf("no ValidatingAdmissionPolicy refusing pods that asked for injection and reached no injector, bound with Deny")
			}
			if got := w.Annotations["cert-manager.io/inject-ca-from"] != ""; got != tc.certManager {
				t.Errorf("cert-manager inject-ca-from: %v, want %v", got, tc.certManager)
			}
			if tc.certManager != (len(r.certs) > 0) {
				t.Errorf("%d cert-manager objects with cert-manager %v", len(r.certs), tc.certManager)
			}
		})
	}
}

// TestChartRequireInjectionOff: the policy is the operator's to turn off, and goes with the injector.
func TestChartRequireInjectionOff(t *testing.T) {
	c := loadChart(t)
	for _, v := range []string{`injector: {requireInjection: false}`, `injector: {enabled: false}`} {
		if r := renderStrict(t, c, values(t, v)); r.policy != nil || r.binding != nil {
			t.Errorf("%s: the injection policy is rendered", v)
		}
	}
}

// TestChartInjectorConfig: the controller's webhook section, which the injector renders pods from: the sidecar
// image of the chart's appVersion, the controller's issuer (or SPIRE's socket) as the sidecar's identity, and a
// serving certificate from the controller's CA whose caBundle it keeps, or cert-manager's.
func TestChartInjectorConfig(t *testing.T) {
	c := loadChart(t)
	webhook := func(vals string) *controller.WebhookConfig {
		t.Helper()
		r := renderStrict(t, c, values(t, vals))
		cfg, err := controller.Parse([]byte(r.configMap(t, "controller.yaml")))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Webhook == nil {
			t.Fatalf("no webhook section in controller.yaml with values %q", vals)
		}
		return cfg.Webhook
	}
	def := webhook("")
	inj := def.Injection
	if inj.Image != "agentauth/sidecar:"+c.Metadata.AppVersion || inj.SPIRE != nil || inj.Identity.Controller == nil ||
		inj.Identity.Controller.Address != "agentauth-issuer.agentauth-system.svc:8443" || inj.Audience != "agentauth" {
		t.Errorf("default injection values: %+v", inj)
	}
	if def.CABundle == nil || def.CABundle.WebhookConfiguration != "agentauth-webhook" ||
		!slices.Contains(def.DNSNames, "agentauth-webhook.agentauth-system.svc") || def.CertManager != nil {
		t.Errorf("default webhook certificate: dnsNames %v, caBundle %+v, certManager %+v", def.DNSNames, def.CABundle, def.CertManager)
	}
	sp := webhook(`spire: {enabled: true, socketPath: /run/spire/sockets/agent.sock}`).Injection
	if sp.Identity.WorkloadAPI == nil || sp.Identity.WorkloadAPI.Socket != "unix:///run/spire/sockets/agent.sock" ||
		sp.SPIRE == nil || sp.SPIRE.SocketDir != "/run/spire/sockets" || sp.SPIRE.CSIDriver != "csi.spiffe.io" {
		t.Errorf("spire injection values: identity %+v, spire %+v", sp.Identity, sp.SPIRE)
	}
	cm := webhook(`injector: {certManager: {enabled: true}}`)
	if cm.CertManager == nil || cm.CABundle != nil {
		t.Errorf("cert-manager: certManager %+v, caBundle %+v; want cert-manager's files and no caBundle keeping", cm.CertManager, cm.CABundle)
	}
	ex := webhook(`injector: {sidecar: {excludeOutboundPorts: [5432], excludeOutboundCIDRs: [10.96.0.0/12], mode: wpt}}`).Injection
	if !slices.Equal(ex.ExcludeOutboundPorts, []uint16{5432}) || !slices.Equal(ex.ExcludeOutboundCIDRs, []string{"10.96.0.0/12"}) || ex.Mode != "wpt" {
		t.Errorf("sidecar values not passed on: %+v", ex)
	}
}

func TestChartCRDs(t *testing.T) {
	r := renderStrict(t, loadChart(t), nil)
	var names []string
	for _, crd := range r.crds {
		names = append(names, crd.Name)
		if crd.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s is deleted with the release (and every object of it)", crd.Name)
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil || v.Subresources == nil || v.Subresources.Status == nil {
				t.Errorf("%s %s: no schema or no status subresource", crd.Name, v.Name)
			}
		}
	}
	slices.Sort(names)
	if want := []string{"cedarpolicies.agentauth.io", "ssftransmitters.agentauth.io"}; !slices.Equal(names, want) {
		t.Errorf("CRDs %q, want %q", names, want)
	}
}

// TestChartControllerAudit: controller.audit turns on the controller's own audit log, in a writable volume, with
// the durability, rotation and checkpoint interval given; by default there is none.
func TestChartControllerAudit(t *testing.T) {
	c := loadChart(t)
	load := func(r rendered) *controller.Config {
		path := filepath.Join(t.TempDir(), "controller.yaml")
		if err := os.WriteFile(path, []byte(r.configMap(t, "controller.yaml")), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := controller.Load(path)
		if err != nil {
			t.Fatalf("rendered controller.yaml: %v\n%s", err, r.configMap(t, "controller.yaml"))
		}
		return cfg
	}
	if a := load(renderStrict(t, c, nil)).Audit; a != nil {
		t.Errorf("default values: audit %+v, want none", a)
	}
	r := renderStrict(t, c, values(t, `
controller:
  audit: {enabled: true, durability: batched, maxFileBytes: 8388608, checkpointInterval: 30s}
`))
	checkControllerConfig(t, r)
	a := load(r).Audit
	want := controller.AuditConfig{Dir: "/var/lib/agentauth/audit", Durability: "batched", MaxFileBytes: 8 << 20, CheckpointInterval: 30 * time.Second}
	if a == nil || *a != want {
		t.Fatalf("audit %+v, want %+v", a, want)
	}
	writable := false
	for _, m := range r.deploy.Spec.Template.Spec.Containers[0].VolumeMounts {
		writable = writable || (!m.ReadOnly && strings.HasPrefix(a.Dir, m.MountPath+"/"))
	}
	if !writable {
		t.Errorf("audit.dir %s is not in a writable volume", a.Dir)
	}
	if a := load(renderStrict(t, c, values(t, `controller: {audit: {enabled: true}}`))).Audit; a == nil || a.Durability != "sync" || a.MaxFileBytes != 0 || a.CheckpointInterval != 0 {
		t.Errorf("audit enabled alone: %+v, want sync and the writer's defaults", a)
	}
}

// TestChartRefusesBadValues: values the chart cannot render correctly fail `helm template` with a message naming them.
func TestChartRefusesBadValues(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct{ values, want string }{
		{`injector: {timeoutSeconds: 60}`, "injector.timeoutSeconds"},
		{`injector: {namespaces: agents}`, "injector.namespaces"},
		{`injector: {certManager: {enabled: true, issuerRef: {kind: ClusterIssuer}}}`, "injector.certManager.issuerRef.name"},
	} {
		_, err := render(t, c, values(t, tc.values))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("values %s: error %v, want one naming %s", tc.values, err, tc.want)
		}
	}
}

// TestDecodeStrict: the strict decoding the chart tests rely on refuses what the API server would drop or refuse.
func TestDecodeStrict(t *testing.T) {
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n"
	if objs, err := decodeStrict(good); err != nil || len(objs) != 1 {
		t.Fatalf("valid ConfigMap: %v", err)
	}
	for name, doc := range map[string]string{
		"unknown field":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndatta: {k: v}\n",
		"duplicate field": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\ndata: {k: w}\n",
		"wrong type":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n",
		"unknown kind":    "apiVersion: v1\nkind: Podd\nmetadata: {name: a}\n",
		"nested unknown":  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {template: {spec: {containers: [{name: c, imag: x}]}}}\n",
	} {
		if _, err := decodeStrict(good + "---\n" + doc); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// TestChartPolicyWebhook: with controller.policy.source crd (the default) and the injector on, CedarPolicy
// objects are sent to the controller's webhook server on create and update (not their status), failing closed with
// a short timeout, the controller's config reads them and keeps that configuration's caBundle (or cert-manager
// does); with source admin, or without the injector's server, there is no such webhook.
func TestChartPolicyWebhook(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name, values               string
		wantWebhook, certManager   bool
		wantSource, wantValidating string // in controller.yaml
	}{
		{"defaults", ``, true, false, "crd", "agentauth-webhook"},
		{"cert-manager", `injector: {certManager: {enabled: true}}`, true, true, "crd", ""},
		{"no injector", `injector: {enabled: false}`, false, false, "crd", ""},
		{"source admin", `controller: {policy: {source: admin}}`, false, false, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := renderStrict(t, c, values(t, tc.values))
			checkControllerConfig(t, r)
			var cfg struct {
				Policy struct {
					Source string `json:"source"`
				} `json:"policy"`
				Webhook struct {
					CABundle struct {
						Validating string `json:"validatingWebhookConfiguration"`
					} `json:"caBundle"`
				} `json:"webhook"`
			}
			if err := yaml.Unmarshal([]byte(r.configMap(t, "controller.yaml")), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Policy.Source != tc.wantSource || cfg.Webhook.CABundle.Validating != tc.wantValidating {
				t.Errorf("controller.yaml policy.source %q, webhook.caBundle.validatingWebhookConfiguration %q; want %q, %q",
					cfg.Policy.Source, cfg.Webhook.CABundle.Validating, tc.wantSource, tc.wantValidating)
			}
			if (r.validate != nil) != tc.wantWebhook {
				t.Fatalf("ValidatingWebhookConfiguration rendered: %v, want %v", r.validate != nil, tc.wantWebhook)
			}
			checkRBAC(t, r, true)
			if !tc.wantWebhook {
				return
			}
			if len(r.validate.Webhooks) != 1 {
				t.Fatalf("%d webhooks, want 1", len(r.validate.Webhooks))
			}
			h := r.validate.Webhooks[0]
			if h.FailurePolicy == nil || *h.FailurePolicy != admissionv1.Fail ||
				h.SideEffects == nil || *h.SideEffects != admissionv1.SideEffectClassNone ||
				h.TimeoutSeconds == nil || *h.TimeoutSeconds > 10 {
				t.Errorf("failurePolicy %v, sideEffects %v, timeout %v; want Fail, None, short",
					deref(h.FailurePolicy), deref(h.SideEffects), deref(h.TimeoutSeconds))
			}
			svc := h.ClientConfig.Service
			if svc == nil || svc.Path == nil || *svc.Path != controller.PathValidateCedarPolicy || svc.Namespace != namespace ||
				!slices.ContainsFunc(r.services, func(s *corev1.Service) bool { return s.Name == svc.Name }) {
				t.Errorf("service %+v is not the controller's %s", svc, controller.PathValidateCedarPolicy)
			}
			if len(h.Rules) != 1 || !slices.Equal(h.Rules[0].Resources, []string{"cedarpolicies"}) ||
				!slices.Equal(h.Rules[0].Operations, []admissionv1.OperationType{admissionv1.Create, admissionv1.Update}) ||
				!slices.Equal(h.Rules[0].APIGroups, []string{"agentauth.io"}) {
				t.Errorf("rules %+v, want CREATE and UPDATE of agentauth.io cedarpolicies", h.Rules)
			}
			if got := r.validate.Annotations["cert-manager.io/inject-ca-from"] != ""; got != tc.certManager {
				t.Errorf("cert-manager inject-ca-from: %v, want %v", got, tc.certManager)
			}
		})
	}
}
