package kubestore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/kubetest"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/store/kubestore"
	"github.com/agentauth/agentauth/pkg/store/storetest"
)

var kube kubetest.Shared

func TestMain(m *testing.M) { os.Exit(kube.Run(m)) }

var nsSeq atomic.Int64

// namespace creates a namespace of its own for t.
func namespace(t *testing.T, srv *kubetest.Server) string {
	t.Helper()
	name := fmt.Sprintf("kubestore-%d", nsSeq.Add(1))
	_, err := srv.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func open(t *testing.T, srv *kubetest.Server, ns string) *kubestore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := kubestore.New(ctx, srv.Client, kubestore.Options{Namespace: ns, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBackendContract(t *testing.T) {
	srv := kube.Server(t)
	storetest.Run(t, func(t *testing.T) store.Backend { return open(t, srv, namespace(t, srv)) })
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within a minute: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWriteThroughOneInstanceReachesAnother(t *testing.T) {
	srv := kube.Server(t)
	ns := namespace(t, srv)
	a, b := open(t, srv, ns), open(t, srv, ns)

	var mu sync.Mutex
	var heard []store.Change
	defer b.Subscribe(func(cs []store.Change) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, cs...)
	})()
	rev := &agentauthv1.Revocation{Id: "r1", Reason: "compromised",
		Subject: &agentauthv1.Subject{Kind: "spiffe", Value: "spiffe://example.org/agent"}}
	va, err := a.Revocations().Put(rev)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "B's subscriber hears of A's Put", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) == 1
	})
	if ch := heard[0]; ch.Bucket != store.BucketRevocations || ch.Key != "r1" || !proto.Equal(ch.Value, rev) || ch.Version != va {
		t.Fatalf("B heard %+v; want the revocation at version %d", ch, va)
	}
	if got, err := b.Revocations().Get("r1"); err != nil || !proto.Equal(got, rev) {
		t.Fatalf("B's Get = %v, %v", got, err)
	}
	if vb, _ := b.Version(); vb != va {
		t.Fatalf("B's version %d, A's write %d: two instances that saw the same writes differ", vb, va)
	}

	vd, err := a.Revocations().Delete("r1")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "B's subscriber hears of A's Delete", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) == 2
	})
	if ch := heard[1]; ch.Key != "r1" || ch.Value != nil || ch.Version != vd || vd <= va {
		t.Fatalf("B heard %+v; want the deletion at version %d (above %d)", ch, vd, va)
	}
	// A third instance started now sees the state as it is.
	c := open(t, srv, ns)
	if list, err := c.Revocations().List(); err != nil || len(list) != 0 {
		t.Fatalf("a new instance lists %v, %v", list, err)
	}
}

func TestSETDeduplicationAcrossInstances(t *testing.T) {
	srv := kube.Server(t)
	ns := namespace(t, srv)
	stores := []*kubestore.Store{open(t, srv, ns), open(t, srv, ns), open(t, srv, ns)}
	now := time.Now()
	const deliveries = 12
	var wg sync.WaitGroup
	var accepted, replays atomic.Int64
	errs := make(chan error, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			err := stores[i%len(stores)].MarkSET("https://tx.example", "jti-1", now.Add(time.Hour), now)
			switch {
			case err == nil:
				accepted.Add(1)
			case errors.Is(err, autherr.ErrReplay):
				replays.Add(1)
			default:
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if accepted.Load() != 1 || replays.Load() != deliveries-1 {
		t.Fatalf("%d deliveries accepted and %d refused as replays; want 1 and %d", accepted.Load(), replays.Load(), deliveries-1)
	}
}

func TestJoinTokenAdmitsOneCallerAcrossInstances(t *testing.T) {
	srv := kube.Server(t)
	ns := namespace(t, srv)
	stores := []*kubestore.Store{open(t, srv, ns), open(t, srv, ns)}
	now := time.Now()
	if _, err := stores[0].JoinTokens().Put(&agentauthv1.JoinToken{Id: "t1", SpiffeId: "spiffe://example.org/a"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var admitted, replays atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			_, err := stores[i%2].UseJoinToken("t1", now)
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.Is(err, autherr.ErrReplay):
				replays.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 1 || replays.Load() != 7 {
		t.Fatalf("%d callers admitted, %d refused; want 1 and 7", admitted.Load(), replays.Load())
	}
}

func TestRecordsAreLabelledSecrets(t *testing.T) {
	srv := kube.Server(t)
	ns := namespace(t, srv)
	s := open(t, srv, ns)
	if _, err := s.CA().Put(&agentauthv1.CAMaterial{Name: "x509", PrivateKeyPkcs8: []byte("key")}); err != nil {
		t.Fatal(err)
	}
	list, err := srv.Client.CoreV1().Secrets(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: kubestore.LabelCollection + "=" + store.BucketCA})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("secrets of the ca collection: %v, %v", list, err)
	}
	sec := list.Items[0]
	if sec.Type != kubestore.SecretType || sec.Labels[kubestore.LabelStore] != kubestore.DefaultName ||
		!strings.HasPrefix(sec.Name, kubestore.DefaultName+"-ca-") {
		t.Fatalf("record secret %s: type %q, labels %v", sec.Name, sec.Type, sec.Labels)
	}
}

func TestOptionsRefused(t *testing.T) {
	for _, o := range []kubestore.Options{
		{},
		{Namespace: "ns", Name: "Not_A_Label"},
		{Namespace: "ns", Name: strings.Repeat("a", 41)},
	} {
		// Refused before the client is used.
		if _, err := kubestore.New(context.Background(), nil, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// cutTransport fails every request while cut is set, as a replica cut off from the API server sees it.
type cutTransport struct {
	next http.RoundTripper
	cut  *atomic.Bool
}

func (c cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("connection refused (cut by the test)")
	}
	return c.next.RoundTrip(r)
}

// TestReadyAsksTheAPIServer: the informer's cache answers reads when the API server is gone, so Ready must not.
func TestReadyAsksTheAPIServer(t *testing.T) {
	srv := kube.Server(t)
	ns := namespace(t, srv)
	var cut atomic.Bool
	cfg := rest.CopyConfig(srv.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return cutTransport{next: rt, cut: &cut} }
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := kubestore.New(ctx, client, kubestore.Options{Namespace: ns, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready with the API server reachable: %v", err)
	}
	cut.Store(true)
	if _, err := s.Version(); err != nil {
		t.Fatalf("Version answers from the cache, cut off or not: %v", err)
	}
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "the Kubernetes API server") {
		t.Fatalf("Ready cut off from the API server = %v, want an error naming it", err)
	}
	cut.Store(false)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after the API server is back: %v", err)
	}
}
