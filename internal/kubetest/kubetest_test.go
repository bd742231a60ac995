package kubetest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/agentauth/agentauth/internal/kubetest"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

// TestServer checks what the harness promises: an admin, TokenRequest and TokenReview with the harness's issuer,
// and impersonation subject to RBAC.
func TestServer(t *testing.T) {
	srv := kube.Server(t)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}
	if _, err := srv.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}
	if _, err := srv.Client.CoreV1().ServiceAccounts("kubetest").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := srv.Client.CoreV1().ServiceAccounts("kubetest").CreateToken(ctx, "app", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"kubetest-audience"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	review, err := srv.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token, Audiences: []string{"kubetest-audience"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !review.Status.Authenticated || review.Status.User.Username != "system:serviceaccount:kubetest:app" {
		t.Fatalf("token review: %+v", review.Status)
	}

	as, err := kubernetes.NewForConfig(srv.ImpersonateServiceAccount("kubetest", "app"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = as.CoreV1().Secrets("kubetest").List(ctx, metav1.ListOptions{})
	if err == nil {
		t.Fatal("a service account without roles listed secrets")
	}
	ssar, err := as.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: "kubetest", Verb: "list", Resource: "secrets",
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ssar.Status.Allowed {
		t.Fatal("self subject access review allows listing secrets")
	}
}

// TestWriteKubeconfig: a process given the written kubeconfig reaches the API server as the admin.
func TestWriteKubeconfig(t *testing.T) {
	srv := kube.Server(t)
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := srv.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(context.Background(),
		&authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Username; got != kubetest.AdminUser {
		t.Errorf("the kubeconfig authenticates as %q, want %q", got, kubetest.AdminUser)
	}
}
