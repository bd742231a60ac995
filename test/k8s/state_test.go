package k8s

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller"
	"github.com/agentauth/agentauth/pkg/leader"
	"github.com/agentauth/agentauth/pkg/store/kubestore"
)

// TestChartRBACAllowsSharedState: as the controller's ServiceAccount, with the Role the chart renders for
// controller.state.backend=kubernetes, the Kubernetes state backend and the leader election do everything they do.
func TestChartRBACAllowsSharedState(t *testing.T) {
	srv, def := installChart(t)
	ctx := context.Background()
	r := renderStrict(t, loadChart(t), values(t, "controller: {state: {backend: kubernetes}}"))
	var sa string
	var role *rbacv1.Role
	for _, o := range r.objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			sa = o.Name
		case *rbacv1.Role:
			role = o.DeepCopy()
		}
	}
	if sa == "" || role == nil {
		t.Fatal("no ServiceAccount or Role rendered")
	}
	// Installed beside the default release's Role (which TestChartRBAC checks), under another name, and removed
	// afterwards.
	role.Name += "-shared-state"
	role.ResourceVersion = ""
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name, Namespace: namespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: namespace}},
	}
	if _, err := srv.Client.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Client.RbacV1().Roles(namespace).Delete(ctx, role.Name, metav1.DeleteOptions{}) })
	if _, err := srv.Client.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Client.RbacV1().RoleBindings(namespace).Delete(ctx, rb.Name, metav1.DeleteOptions{}) })

	as, err := kubernetes.NewForConfig(srv.ImpersonateServiceAccount(namespace, sa))
	if err != nil {
		t.Fatal(err)
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := kubestore.New(openCtx, as, kubestore.Options{Namespace: namespace, Name: "rbac-check", Timeout: time.Minute})
	if err != nil {
		t.Fatalf("kubestore as the controller: %v", err)
	}
	defer st.Close()
	now := time.Now()
	steps := []struct {
		name string
		do   func() error
	}{
		{"put", func() error {
			_, err := st.CA().Put(&agentauthv1.CAMaterial{Name: "x509", PrivateKeyPkcs8: []byte("k")})
			return err
		}},
		{"update", func() error {
			_, err := st.CA().Put(&agentauthv1.CAMaterial{Name: "x509", PrivateKeyPkcs8: []byte("k2")})
			return err
		}},
		{"delete", func() error { _, err := st.CA().Delete("x509"); return err }},
		{"join token", func() error {
			if _, err := st.JoinTokens().Put(&agentauthv1.JoinToken{Id: "t"}); err != nil {
				return err
			}
			_, err := st.UseJoinToken("t", now)
			return err
		}},
		{"mark SET", func() error {
			return st.MarkSET("https://tx.example", "j", now.Add(-time.Second), now.Add(-time.Minute))
		}},
		{"re-mark an expired SET", func() error { return st.MarkSET("https://tx.example", "j", now.Add(time.Hour), now) }},
		{"prune SETs", func() error { _, err := st.PruneSETs(now.Add(2 * time.Hour)); return err }},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Errorf("%s as the controller: %v", s.name, err)
		}
	}

	e, err := leader.New(as, leader.Config{Namespace: namespace, Name: def.leaseName(t), Identity: "replica-0",
		RetryPeriod: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.Run(runCtx)
	}()
	defer func() { stop(); <-done }()
	deadline := time.Now().Add(time.Minute)
	for !e.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the controller's ServiceAccount did not get the chart's Lease within a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leaseName is the Lease the chart's Role names.
func (r rendered) leaseName(t *testing.T) string {
	t.Helper()
	for _, o := range r.objs {
		if role, ok := o.(*rbacv1.Role); ok {
			for _, rule := range role.Rules {
				if len(rule.Resources) == 1 && rule.Resources[0] == "leases" && len(rule.ResourceNames) == 1 {
					return rule.ResourceNames[0]
				}
			}
		}
	}
	t.Fatal("the Role names no Lease")
	return ""
}

// TestChartStateConfig: by default the controller keeps its state in the release's namespace and elects its leader
// on the Lease the Role names; bbolt is for one replica only, and an unknown backend is refused.
func TestChartStateConfig(t *testing.T) {
	c := loadChart(t)
	r := renderStrict(t, c, values(t, ""))
	cfg, err := controller.Parse([]byte(r.configMap(t, "controller.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.State.Kubernetes
	if cfg.State.Backend != controller.BackendKubernetes || k == nil || k.Namespace != namespace || k.LeaseName != r.leaseName(t) {
		t.Fatalf("state %+v (kubernetes %+v); want backend kubernetes in %s with Lease %s", cfg.State, k, namespace, r.leaseName(t))
	}
	for _, tc := range []struct{ values, want string }{
		{"controller: {state: {backend: bbolt}}", "set controller.replicas to 1"},
		{"controller: {state: {backend: etcd}}", "controller.state.backend must be kubernetes or bbolt"},
	} {
		if _, err := render(t, c, values(t, tc.values)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.values, err, tc.want)
		}
	}
}
