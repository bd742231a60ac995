package k8s

import (
	"context"
	"fmt"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/agentauth/agentauth/internal/kubetest"
)

// fieldManager is the server-side apply field manager of these tests.
const fieldManager = "agentauth-chart-test"

// applier applies manifests with server-side apply.
type applier struct {
	dyn dynamic.Interface
	srv *kubetest.Server
}

func newApplier(t *testing.T, srv *kubetest.Server) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, srv: srv}
}

// apply server-side applies each object (dry run: DryRun=All, nothing is stored), resolving its resource with
// the server's discovery at the time of the call.
func (a *applier) apply(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) error {
	groups, err := restmapper.GetAPIGroupResources(a.srv.Client.Discovery())
	if err != nil {
		return err
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	opts := metav1.PatchOptions{FieldManager: fieldManager}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk, o.GetName(), err)
		}
		data, err := o.MarshalJSON()
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("%s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// unstructuredObjects splits a rendered manifest into objects.
func unstructuredObjects(t *testing.T, manifest string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for doc := range strings.SplitSeq(manifest, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &o.Object); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	return objs
}

// installChart renders the chart with the default values and installs it on the test API server (once per package
// run): the release namespace, then every object accepted by a server-side dry run (CRDs applied for real first, so
// that their kinds exist), then the CRDs, the ServiceAccount and the RBAC objects for real. The Deployment, the
// Services and the webhook configuration are not stored: nothing here would run or answer them.
func installChart(t *testing.T) (*kubetest.Server, rendered) {
	t.Helper()
	srv := kube.Server(t)
	ctx := context.Background()
	r := renderStrict(t, loadChart(t), values(t, ""))
	objs := unstructuredObjects(t, r.rel.Manifest)
	a := newApplier(t, srv)

	_, err := srv.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	var crds, stored, rest []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition":
			crds = append(crds, o)
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			stored = append(stored, o)
		default:
			rest = append(rest, o)
		}
	}
	if len(crds) == 0 || len(stored) == 0 || len(rest) == 0 {
		t.Fatalf("rendered %d CRDs, %d RBAC objects, %d others", len(crds), len(stored), len(rest))
	}
	if err := a.apply(ctx, crds, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if err := a.apply(ctx, crds, false); err != nil {
		t.Fatal(err)
	}
	if err := a.apply(ctx, append(stored, rest...), true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if err := a.apply(ctx, stored, false); err != nil {
		t.Fatal(err)
	}
	return srv, r
}

// TestChartServerDryRun: every object the chart renders with the default values is accepted by the real API server
// (server-side apply, DryRun=All), CRDs first. A dry run stores nothing.
func TestChartServerDryRun(t *testing.T) {
	srv, r := installChart(t)
	if r.deploy == nil || r.webhook == nil {
		t.Fatal("the default values render no Deployment or no webhook configuration")
	}
	ctx := context.Background()
	if _, err := srv.Client.AppsV1().Deployments(namespace).Get(ctx, r.deploy.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the dry-run Deployment was stored (%v)", err)
	}
	// A wrong field is refused by the server, so the dry run does check something.
	bad := unstructuredObjects(t, r.rel.Manifest)
	for _, o := range bad {
		if o.GetKind() == "Deployment" {
			if err := unstructured.SetNestedField(o.Object, "not-a-number", "spec", "replicas"); err != nil {
				t.Fatal(err)
			}
			if err := newApplier(t, srv).apply(ctx, []*unstructured.Unstructured{o}, true); err == nil {
				t.Fatal("a Deployment with replicas: not-a-number passed the dry run")
			}
		}
	}
}

// access is one request the controller's service account may or may not make.
type access struct {
	verb, group, resource, subresource, namespace, name string
}

func (a access) String() string {
	s := a.verb + " " + a.resource
	if a.subresource != "" {
		s += "/" + a.subresource
	}
	if a.group != "" {
		s += "." + a.group
	}
	if a.name != "" {
		s += " " + a.name
	}
	if a.namespace != "" {
		return s + " in " + a.namespace
	}
	return s + " cluster-wide"
}

// TestChartRBAC: impersonating the controller's ServiceAccount, with the chart's RBAC installed, it may do what
// the controller needs and nothing else tried here.
func TestChartRBAC(t *testing.T) {
	srv, r := installChart(t)
	ctx := context.Background()
	var sa string
	var leases, secrets []string
	for _, o := range r.objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			sa = o.Name
		case *rbacv1.Role:
			for _, rule := range o.Rules {
				switch {
				case len(rule.ResourceNames) > 0 && rule.Resources[0] == "leases":
					leases = rule.ResourceNames
				case len(rule.ResourceNames) > 0 && rule.Resources[0] == "secrets":
					secrets = rule.ResourceNames
				}
			}
		}
	}
	if sa == "" || len(leases) != 1 || len(secrets) == 0 {
		t.Fatalf("service account %q, lease names %v, secret names %v", sa, leases, secrets)
	}
	as, err := kubernetes.NewForConfig(srv.ImpersonateServiceAccount(namespace, sa))
	if err != nil {
		t.Fatal(err)
	}
	const other = "agents" // any other namespace
	webhook := r.webhook.Name

	allowed := []access{
		{verb: "create", group: "authentication.k8s.io", resource: "tokenreviews"},
		{verb: "get", resource: "pods", namespace: other},
		{verb: "list", resource: "pods"},
		{verb: "watch", resource: "pods"},
		{verb: "create", group: "coordination.k8s.io", resource: "leases", namespace: namespace},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: leases[0]},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: leases[0]},
		{verb: "list", group: "agentauth.io", resource: "cedarpolicies"},
		{verb: "watch", group: "agentauth.io", resource: "ssftransmitters"},
		{verb: "update", group: "agentauth.io", resource: "cedarpolicies", subresource: "status"},
		{verb: "create", resource: "secrets", namespace: namespace},
		// The shared state (controller.state.backend kubernetes, the default): every Secret of its namespace.
		{verb: "list", resource: "secrets", namespace: namespace},
		{verb: "watch", resource: "secrets", namespace: namespace},
		{verb: "delete", resource: "secrets", namespace: namespace, name: "agentauth-ca-0123"},
		{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: webhook},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: r.validate.Name},
		{verb: "create", group: "events.k8s.io", resource: "events", namespace: other},
	}
	for _, s := range secrets {
		allowed = append(allowed, access{verb: "get", resource: "secrets", namespace: namespace, name: s},
			access{verb: "update", resource: "secrets", namespace: namespace, name: s})
	}
	denied := []access{
		{verb: "list", resource: "secrets"},
		{verb: "list", resource: "secrets", namespace: other},
		{verb: "watch", resource: "secrets", namespace: other},
		{verb: "delete", resource: "secrets", namespace: other, name: secrets[0]},
		{verb: "get", resource: "secrets", namespace: other, name: secrets[0]},
		{verb: "create", resource: "pods", namespace: other},
		{verb: "delete", resource: "pods", namespace: other, name: "agent-0"},
		{verb: "update", resource: "pods", namespace: other, name: "agent-0"},
		{verb: "create", resource: "serviceaccounts", subresource: "token", namespace: other, name: "agent"},
		{verb: "get", group: "coordination.k8s.io", resource: "leases", namespace: namespace, name: "someone-elses"},
		{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: "kube-system", name: leases[0]},
		{verb: "patch", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "someone-elses"},
		{verb: "create", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations"},
		{verb: "delete", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: webhook},
		{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "someone-elses"},
		{verb: "create", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations"},
		{verb: "delete", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: r.validate.Name},
		{verb: "create", group: "agentauth.io", resource: "cedarpolicies", namespace: other},
		{verb: "delete", group: "agentauth.io", resource: "cedarpolicies", namespace: other, name: "p"},
		{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"},
		{verb: "get", resource: "configmaps", namespace: other, name: "c"},
		{verb: "impersonate", resource: "serviceaccounts", namespace: other, name: "agent"},
	}
	check := func(a access, want bool) {
		review, err := as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace, Name: a.name,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed != want {
			t.Errorf("%s: allowed %v, want %v (%s)", a, review.Status.Allowed, want, review.Status.Reason)
		}
	}
	for _, a := range allowed {
		check(a, true)
	}
	for _, a := range denied {
		check(a, false)
	}

	// And for real, as the service account: a TokenReview works, listing every Secret and creating a pod do not.
	if _, err := as.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: "not-a-token", Audiences: []string{"agentauth"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("TokenReview as the controller: %v", err)
	}
	if _, err := as.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing secrets cluster-wide as the controller: %v, want Forbidden", err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}}}
	if _, err := as.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("creating a pod as the controller: %v, want Forbidden", err)
	}
}
