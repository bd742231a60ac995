package witness_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/audit"
	"github.com/agentauth/agentauth/pkg/audit/witness"
	"github.com/agentauth/agentauth/pkg/mtls"
	"github.com/agentauth/agentauth/pkg/store"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type svidSource struct {
	svid   *x509svid.SVID
	bundle *x509bundle.Bundle
}

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }
func (s svidSource) GetX509BundleForTrustDomain(spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return s.bundle, nil
}

// sidecarLog is a sidecar's audit log directory, written as the sidecar writes it: a key kept in the directory,
// certified by the SVID, checkpoints signed at each Close.
type sidecarLog struct {
	t    testing.TB
	dir  string
	svid *x509svid.SVID
	next int
}

func newSidecarLog(t *testing.T, svid *x509svid.SVID, certifier *x509svid.SVID) *sidecarLog {
	t.Helper()
	l := &sidecarLog{t: t, dir: t.TempDir(), svid: svid}
	_, v, err := audit.LoadOrCreateKey(filepath.Join(l.dir, "audit.key"), audit.OriginFor(svid.ID))
	if err != nil {
		t.Fatal(err)
	}
	if certifier == nil {
		certifier = svid
	}
	cert, err := audit.CertifyKey(audit.VerifierKey(v), certifier, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, audit.KeyCertFile), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return l
}

// add appends n records (their paths tagged) and signs a checkpoint.
func (l *sidecarLog) add(n int, tag string) {
	l.t.Helper()
	s, _, err := audit.LoadOrCreateKey(filepath.Join(l.dir, "audit.key"), audit.OriginFor(l.svid.ID))
	if err != nil {
		l.t.Fatal(err)
	}
	w, err := audit.Open(audit.Options{Dir: l.dir, Signer: s, CheckpointInterval: time.Hour})
	if err != nil {
		l.t.Fatal(err)
	}
	for range n {
		rec := &audit.Record{Time: time.Now(), Kind: audit.KindDecision, Decision: audit.Allow,
			Path: fmt.Sprintf("/%s/%d", tag, l.next)}
		l.next++
		if _, err := w.Append(context.Background(), rec); err != nil {
			l.t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		l.t.Fatal(err)
	}
}

// rewrite throws the log away (keeping the key and its certificate) and writes n other records: what whoever
// controls the host does to hide what the log held.
func (l *sidecarLog) rewrite(n int) {
	l.t.Helper()
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "audit.key" && e.Name() != audit.KeyCertFile {
			if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
				l.t.Fatal(err)
			}
		}
	}
	l.next = 0
	l.add(n, "rewritten")
}

type controller struct {
	witness *witness.Witness
	store   *store.Store
	logDir  string
	log     *audit.Writer
	addr    string
	ca      *testca.CA
}

// startController serves a real witness on mTLS gRPC, with a bbolt store and its own audit log.
func startController(t *testing.T, ca *testca.CA, configure ...func(*witness.Config)) *controller {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	c := &controller{store: st, logDir: t.TempDir(), ca: ca}
	s, _, err := audit.LoadOrCreateKey(filepath.Join(c.logDir, "audit.key"), "example.org/agentauth/controller")
	if err != nil {
		t.Fatal(err)
	}
	if c.log, err = audit.Open(audit.Options{Dir: c.logDir, Signer: s, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.log.Close() })
	cfg := witness.Config{Store: st, Bundle: ca.X509Bundle(), Audit: c.log}
	for _, f := range configure {
		f(&cfg)
	}
	if c.witness, err = witness.New(cfg); err != nil {
		t.Fatal(err)
	}
	src := svidSource{svid: ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agentauth/controller")), bundle: ca.X509Bundle()}
	g := grpc.NewServer(grpc.Creds(mtls.GRPCCredentials(mtls.ServerConfig(src, mtls.AuthorizeTrustDomains(td)), nil)))
	agentauthv1.RegisterAuditWitnessServiceServer(g, c.witness)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	c.addr = ln.Addr().String()
	return c
}

// client connects as svid, as the sidecar does.
func (c *controller) client(t *testing.T, l *sidecarLog, svid *x509svid.SVID) *witness.Client {
	t.Helper()
	src := svidSource{svid: svid, bundle: c.ca.X509Bundle()}
	cc, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(mtls.GRPCCredentials(
		mtls.ClientConfig(src, mtls.AuthorizeIDs(spiffeid.RequireFromPath(td, "/agentauth/controller"))), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return witness.NewClient(l.dir, cc, nil)
}

func (c *controller) alarms(kind string) float64 { return witness.AlarmCount(c.witness, kind) }

// records returns the controller's audit records with the given action.
func (c *controller) records(t *testing.T, action string) []*audit.Record {
	t.Helper()
	f, err := os.Open(filepath.Join(c.logDir, "audit-000001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []*audit.Record
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r, err := audit.ParseRecord(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Action == action {
			out = append(out, r)
		}
	}
	return out
}

func (c *controller) stored(t *testing.T, id spiffeid.ID) audit.Checkpoint {
	t.Helper()
	w, err := c.store.Witnessed().Get(id.String())
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(w.GetVerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(w.GetCheckpoint(), v)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func send(t *testing.T, cl *witness.Client) (uint64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return cl.Send(ctx)
}

func TestWitnessAcceptsHonestGrowth(t *testing.T) {
	ca := testca.New(t, td)
	c := startController(t, ca)
	svid := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/planner"))
	l := newSidecarLog(t, svid, nil)
	cl := c.client(t, l, svid)

	for i, n := range []int{5, 1, 7, 16} {
		l.add(n, "honest")
		size, err := send(t, cl)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if size != uint64(l.next) {
			t.Fatalf("round %d: witnessed %d, want %d", i, size, l.next)
		}
	}
	// A restarted sidecar does not know what the controller holds: it learns it, and proves from there.
	l.add(3, "after-restart")
	size, err := send(t, c.client(t, l, svid))
	if err != nil || size != uint64(l.next) {
		t.Fatalf("after a restart: witnessed %d, %v; want %d", size, err, l.next)
	}
	if got := c.stored(t, svid.ID).Size; got != uint64(l.next) {
		t.Fatalf("stored checkpoint of %d records, want %d", got, l.next)
	}
	if n := c.alarms(witness.AlarmFork) + c.alarms(witness.AlarmShrink); n != 0 {
		t.Fatalf("%v alarms on an honest log", n)
	}
}

func TestWitnessAlarms(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(l *sidecarLog)
		alarm  string
	}{
		{"forked: rewritten and longer", func(l *sidecarLog) { l.rewrite(9) }, witness.AlarmFork},
		{"forked: rewritten, same size", func(l *sidecarLog) { l.rewrite(6) }, witness.AlarmFork},
		{"forked: rewritten from the start, then grown past", func(l *sidecarLog) { l.rewrite(6); l.add(30, "more") }, witness.AlarmFork},
		{"shrank: truncated", func(l *sidecarLog) { l.rewrite(2) }, witness.AlarmShrink},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca := testca.New(t, td)
			c := startController(t, ca)
			svid := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/planner"))
			l := newSidecarLog(t, svid, nil)
			cl := c.client(t, l, svid)
			l.add(6, "honest")
			if _, err := send(t, cl); err != nil {
				t.Fatal(err)
			}
			witnessed := c.stored(t, svid.ID)

			tc.tamper(l)
			for range 2 { // the same bad checkpoint sent twice raises one alarm
				_, err := send(t, cl)
				if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("sending the tampered log's checkpoint: %v, want FailedPrecondition", err)
				}
			}
			if got := c.alarms(tc.alarm); got != 1 {
				t.Fatalf("agentauth_audit_witness_alarms_total{kind=%q} = %v, want 1", tc.alarm, got)
			}
			recs := c.records(t, "witness-alarm-"+tc.alarm)
			if len(recs) != 1 || recs[0].Agent != svid.ID.String() || recs[0].Kind != audit.KindController {
				t.Fatalf("alarm records: %+v", recs)
			}
			if !strings.Contains(recs[0].Reason, fmt.Sprintf("witnessed %d records", witnessed.Size)) {
				t.Fatalf("alarm record reason %q does not name the witnessed checkpoint", recs[0].Reason)
			}
			// The witnessed checkpoint stands: the evidence is not overwritten by the tampered log.
			if got := c.stored(t, svid.ID); got.Size != witnessed.Size || string(got.Root) != string(witnessed.Root) {
				t.Fatalf("stored checkpoint changed to %d records", got.Size)
			}
		})
	}
}

func TestWitnessRefusesAnotherWorkloadsKey(t *testing.T) {
	ca := testca.New(t, td)
	c := startController(t, ca)
	svid := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/planner"))
	other := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/other"))
	l := newSidecarLog(t, svid, nil)
	l.add(3, "x")
	// The log of planner, sent over a connection made as another workload.
	if _, err := send(t, c.client(t, l, other)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("sent as another workload: %v, want InvalidArgument", err)
	}
	// A key certified by an SVID of another CA.
	foreign := testca.New(t, td).CreateX509SVID(svid.ID)
	l2 := newSidecarLog(t, svid, foreign)
	l2.add(3, "y")
	if _, err := send(t, c.client(t, l2, svid)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("key certified by another CA: %v, want InvalidArgument", err)
	}
	if _, err := c.store.Witnessed().Get(svid.ID.String()); err == nil {
		t.Fatal("a refused checkpoint was stored")
	}
}

// TestWitnessLastCheckpoint: the witness exposes when each connected sidecar last reported, and a sidecar whose
// log does not grow still reports (it sends its checkpoint again), so only one that stopped looks stale.
func TestWitnessLastCheckpoint(t *testing.T) {
	ca := testca.New(t, td)
	var mu sync.Mutex
	start := time.Now().Truncate(time.Second)
	now := start
	connected := []string{}
	c := startController(t, ca, func(cfg *witness.Config) {
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		cfg.Connected = func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(connected) }
	})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.witness.Collectors()...)
	last := func() map[string]float64 {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			if f.GetName() == "agentauth_audit_witness_checkpoints_total" {
				out["checkpoints"] = f.GetMetric()[0].GetCounter().GetValue()
			}
			if f.GetName() == "agentauth_audit_witness_last_checkpoint_timestamp_seconds" {
				for _, m := range f.GetMetric() {
					out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	at := func(d time.Duration, ids ...string) {
		mu.Lock()
		now, connected = now.Add(d), ids
		mu.Unlock()
	}
	planner := ca.CreateX509SVID(spiffeid.RequireFromPath(td, "/agent/planner"))
	l := newSidecarLog(t, planner, nil)
	cl := c.client(t, l, planner)
	id := planner.ID.String()

	at(0, id)
	l.add(3, "first")
	if _, err := send(t, cl); err != nil {
		t.Fatal(err)
	}
	if got := last(); got[id] != float64(start.Unix()) {
		t.Fatalf("after the first checkpoint: %v", got)
	}
	at(time.Minute, id)
	if _, err := send(t, cl); err != nil { // nothing new in the log
		t.Fatal(err)
	}
	if got := last(); got[id] != float64(start.Unix()+60) || got["checkpoints"] != 1 {
		t.Fatalf("the same checkpoint a minute later: %v, want the sidecar heard from at %d and still 1 checkpoint witnessed",
			got, start.Unix()+60)
	}
	at(time.Minute) // the sidecar went away: no series, rather than one that looks stale
	if got := last(); len(got) != 1 {
		t.Fatalf("a sidecar no longer connected: %v, want no series", got)
	}
}
