package testca

import (
	"context"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestWorkloadAPIServesCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := New(t, td)
	other := New(t, spiffeid.RequireTrustDomainFromString("other.org"))
	wl := StartWorkloadAPI(t)
	svid, wit := wl.ServeCA(ca, agent)
	wl.SetX509SVID(svid, ca.X509Bundle(), other.X509Bundle())

	client, err := workloadapi.New(ctx, workloadapi.WithAddr(wl.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	x509ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := x509ctx.DefaultSVID(); got.ID != agent || !got.Certificates[0].Equal(svid.Certificates[0]) {
		t.Fatalf("served SVID differs: %v", got.ID)
	}
	if x509ctx.Bundles.Len() != 2 {
		t.Fatalf("want own and federated bundle, got %d", x509ctx.Bundles.Len())
	}
	bundles, err := client.FetchX509Bundles(ctx)
	if err != nil || bundles.Len() != 2 {
		t.Fatalf("FetchX509Bundles: %v, %d bundles", err, bundles.Len())
	}
	jwtBundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	token, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "tool"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(token.Marshal(), jwtBundles, []string{"tool"}); err != nil {
		t.Fatal(err)
	}
	gotWIT, err := client.FetchWITSVID(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if gotWIT.Marshal() != wit.Token || gotWIT.PrivateKey == nil {
		t.Fatal("served WIT-SVID differs or lacks its key")
	}
	if _, err := client.FetchWITBundles(ctx); err != nil {
		t.Fatal(err)
	}
}

type x509Watcher struct{ updates chan *workloadapi.X509Context }

func (w x509Watcher) OnX509ContextUpdate(c *workloadapi.X509Context) { w.updates <- c }
func (w x509Watcher) OnX509ContextWatchError(error)                  {}

func TestWorkloadAPIPushesRotation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := New(t, td)
	wl := StartWorkloadAPI(t)
	first, _ := wl.ServeCA(ca, agent)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(wl.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	w := x509Watcher{updates: make(chan *workloadapi.X509Context, 4)}
	watchCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = client.WatchX509Context(watchCtx, w)
	}()
	defer func() { stop(); <-done }()

	if got := (<-w.updates).DefaultSVID(); !got.Certificates[0].Equal(first.Certificates[0]) {
		t.Fatal("first update is not the first SVID")
	}
	second := ca.CreateX509SVID(agent)
	wl.SetX509SVID(second, ca.X509Bundle())
	select {
	case got := <-w.updates:
		if !got.DefaultSVID().Certificates[0].Equal(second.Certificates[0]) {
			t.Fatal("rotation pushed the wrong SVID")
		}
	case <-ctx.Done():
		t.Fatal("no rotation pushed")
	}
}

func TestWorkloadAPIRequiresHeader(t *testing.T) {
	wl := StartWorkloadAPI(t)
	wl.ServeCA(New(t, td), agent)
	conn, err := grpc.NewClient(wl.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("want InvalidArgument without the security header, got %v", err)
	}
}

func TestWorkloadAPIWithoutWITProfile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wl := StartWorkloadAPI(t, WithoutWITProfile())
	wl.ServeCA(New(t, td), agent)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(wl.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.FetchWITSVID(ctx, ""); status.Code(err) != codes.Unimplemented {
		t.Fatalf("want Unimplemented, got %v", err)
	}
}
