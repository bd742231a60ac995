package controller

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/signals/signalstest"
	"github.com/agentauth/agentauth/pkg/store"
)

const (
	ssfAudience = "https://agentauth.example.org"
	mgmtToken   = "Bearer mgmt-token"
)

// newTransmitter is a signalstest transmitter on plain HTTP whose issuer is its base URL, for ssfAudience, with
// every event type this receiver knows.
func newTransmitter(t *testing.T) *signalstest.Transmitter {
	return signalstest.New(t, signalstest.Options{Audience: ssfAudience, Authorization: mgmtToken,
		EventsSupported: signals.KnownEventTypes()})
}

// signEvent is a SET of tr with one event and no members.
func signEvent(tr *signalstest.Transmitter, jti string, sub signals.SubjectID, event string) signalstest.Signed {
	return tr.Sign(signalstest.SET{JTI: jti, Subject: sub, Events: map[string]map[string]any{event: nil}})
}

func agent(name string) signals.SubjectID {
	return signals.SubjectID{Format: signals.FormatURI, URI: "spiffe://example.org/agent/" + name}
}

func push(t *testing.T, endpoint, auth, token string) int {
	t.Helper()
	code, err := signalstest.Push(context.Background(), endpoint, auth, token)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// ssfConfig is a controller config on loopback and a fresh data directory, with the given ssf block.
func ssfConfig(t *testing.T, ssf string) *Config {
	t.Helper()
	dir := t.TempDir()
	cfg, err := Parse([]byte(fmt.Sprintf(`trustDomain: example.org
dataDir: %s
issuer: {listen: 127.0.0.1:0}
xds: {listen: 127.0.0.1:0}
admin: {socket: %s}
ops: {listen: 127.0.0.1:0}
%s`, filepath.Join(dir, "data"), filepath.Join(dir, "admin.sock"), ssf)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runController starts a controller; stop ends Run and waits for it (also at cleanup).
func runController(t *testing.T, cfg *Config) (*Controller, func()) {
	t.Helper()
	c, err := New(context.Background(), cfg, zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(stop)
	return c, stop
}

// streamVerified reads agentauth_ssf_stream_verified for issuer from the ops endpoint's /metrics.
func streamVerified(t *testing.T, c *Controller, issuer string) string {
	resp, err := http.Get("http://" + c.opsLn().Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	prefix := fmt.Sprintf("agentauth_ssf_stream_verified{issuer=%q} ", issuer)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return v
		}
	}
	return ""
}

// revokedBy returns the stored revocation caused by SET jti, if any.
func revokedBy(t *testing.T, c *Controller, jti string) (subject string, ok bool) {
	revs, err := c.store.Revocations().List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range revs {
		if r.GetCause().GetSetJti() == jti {
			return r.GetSubject().GetValue(), true
		}
	}
	return "", false
}

// waitFor polls cond until it holds. The timeout only stops a broken test from hanging; nothing is timed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestSSFStreamWithPollDelivery: the controller creates a poll stream at the transmitter, polls it and verifies
// it; a polled SET becomes a stored revocation and is acknowledged in the next poll, a bad SET in the same batch
// is reported in setErrs and applies nothing; after a restart the same stream is found and verified again.
func TestSSFStreamWithPollDelivery(t *testing.T) {
	tr := newTransmitter(t)
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      poll: {maxEvents: 10}
      stream: {authorization: %q, delivery: poll, eventsRequested: [session-revoked, account-disabled]}
`, tr.Issuer, ssfAudience, tr.Issuer, mgmtToken))
	c, stop := runController(t, cfg)
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.Issuer) == "1" })
	streams, n := tr.Streams(), tr.Counts()
	if n.Created != 1 || n.Verifications != 1 || len(streams) != 1 {
		t.Fatalf("created %d streams, %d verifications", n.Created, n.Verifications)
	}
	if s := streams[0]; s.Delivery.Method != signals.DeliveryPoll ||
		!slices.Equal(s.EventsRequested, []string{signals.EventSessionRevoked, signals.EventAccountDisabled}) {
		t.Fatalf("stream %+v", s)
	}

	good := signEvent(tr, "good", agent("a"), signals.EventSessionRevoked)
	bad := tr.Sign(signalstest.SET{JTI: "bad", Audience: []string{"https://someone-else.example"}, Subject: agent("b"),
		Events: map[string]map[string]any{signals.EventAccountDisabled: nil}})
	tr.Enqueue(good, bad)
	waitFor(t, "the revocation", func() bool { _, ok := revokedBy(t, c, "good"); return ok })
	waitFor(t, "the acknowledgement", func() bool { return tr.Counts().Queued == 0 })
	polls := tr.Polls()
	i := slices.IndexFunc(polls, func(p signalstest.Poll) bool { return slices.Contains(p.Returned, "good") })
	if i < 0 || i+1 >= len(polls) || !slices.Equal(polls[i].Returned, []string{"good", "bad"}) {
		t.Fatalf("polls %+v", polls)
	}
	next := polls[i+1]
	if !slices.Equal(next.Acks, []string{"good"}) || len(next.SetErrs) != 1 || next.SetErrs["bad"].Err != signals.CodeInvalidAudience {
		t.Fatalf("the poll after the batch carried acks %v, setErrs %v", next.Acks, next.SetErrs)
	}
	if sub, _ := revokedBy(t, c, "good"); sub != "spiffe://example.org/agent/a" {
		t.Fatalf("revoked %q", sub)
	}
	if _, ok := revokedBy(t, c, "bad"); ok {
		t.Fatal("the refused SET was applied")
	}

	// A restart finds the stream it created, and verifies it again.
	stop()
	c2, _ := runController(t, cfg)
	waitFor(t, "the stream to be verified after a restart", func() bool { return streamVerified(t, c2, tr.Issuer) == "1" })
	if n := tr.Counts(); n.Created != 1 || n.Verifications != 2 {
		t.Fatalf("after a restart: created %d streams, %d verifications", n.Created, n.Verifications)
	}
}

// TestSSFStreamWithPushDeliveryTransmitterDown: a transmitter that is down at start delays nothing: push and
// another transmitter's polling work meanwhile, and the stream is created and verified over push once it is up.
func TestSSFStreamWithPushDeliveryTransmitterDown(t *testing.T) {
	tr := newTransmitter(t)
	tr.SetDown(true)
	tp := newTransmitter(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ssfAddr := ln.Addr().String()
	ln.Close()
	pushURL := "http://" + ssfAddr + "/ssf/events"
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: %s
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      pushAuthorization: Bearer push-secret
      stream: {authorization: %q, delivery: push, pushEndpoint: %s}
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      poll: {url: %s/poll, authorization: %q, interval: 1s}
`, ssfAddr, tr.Issuer, ssfAudience, tr.Issuer, mgmtToken, pushURL, tp.Issuer, ssfAudience, tp.Issuer, tp.Issuer, mgmtToken))
	c, _ := runController(t, cfg)
	waitFor(t, "a refused discovery", func() bool { return tr.Counts().Refused > 0 })

	if code := push(t, pushURL, "Bearer push-secret", signEvent(tr, "pushed", agent("c"), signals.EventAccountDisabled).Token); code != http.StatusAccepted {
		t.Fatalf("push while the stream is not set up: HTTP %d", code)
	}
	tp.Enqueue(signEvent(tp, "polled", agent("d"), signals.EventSessionRevoked))
	waitFor(t, "the polled SET applied and acknowledged", func() bool {
		_, ok := revokedBy(t, c, "polled")
		return ok && tp.Counts().Queued == 0
	})
	if _, ok := revokedBy(t, c, "pushed"); !ok {
		t.Fatal("the pushed SET was not applied")
	}
	if v := streamVerified(t, c, tr.Issuer); v != "0" {
		t.Fatalf("stream verified = %q before the transmitter was up", v)
	}

	tr.SetDown(false)
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.Issuer) == "1" })
	streams, created := tr.Streams(), tr.Counts().Created
	if created != 1 {
		t.Fatalf("created %d streams", created)
	}
	if d := streams[0].Delivery; d.Method != signals.DeliveryPush || d.EndpointURL != pushURL || d.AuthorizationHeader != "Bearer push-secret" {
		t.Fatalf("delivery %+v", d)
	}
	if len(streams[0].EventsRequested) != len(signals.KnownEventTypes())-2 {
		t.Fatalf("default events requested: %v", streams[0].EventsRequested)
	}
}

// TestSSFStreamReplacedWhenConfigChanges: a remembered stream that no longer matches the configuration (here
// push became poll) is deleted and a new one created.
func TestSSFStreamReplacedWhenConfigChanges(t *testing.T) {
	tr := newTransmitter(t)
	block := func(stream string) string {
		return fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - {issuer: %s, audience: [%s], jwksURL: %s/jwks, stream: %s}
`, tr.Issuer, ssfAudience, tr.Issuer, stream)
	}
	cfg := ssfConfig(t, block(fmt.Sprintf(`{authorization: %q, delivery: push, pushEndpoint: "http://127.0.0.1:1/ssf/events"}`, mgmtToken)))
	c, stop := runController(t, cfg)
	waitFor(t, "the push stream", func() bool { return tr.Counts().Created == 1 })
	if v := streamVerified(t, c, tr.Issuer); v != "0" {
		t.Fatalf("verified = %q though pushes cannot arrive", v)
	}
	stop()

	poll := ssfConfig(t, block(fmt.Sprintf(`{authorization: %q, delivery: poll}`, mgmtToken)))
	poll.DataDir = cfg.DataDir
	c2, _ := runController(t, poll)
	waitFor(t, "the poll stream to be verified", func() bool { return streamVerified(t, c2, tr.Issuer) == "1" })
	streams, created := tr.Streams(), tr.Counts().Created
	if created != 2 || len(streams) != 1 || streams[0].StreamID != "stream-2" || streams[0].Delivery.Method != signals.DeliveryPoll {
		t.Fatalf("created %d, streams %+v", created, streams)
	}
}

func TestSSFConfigValidation(t *testing.T) {
	const base = "ssf:\n  listen: 127.0.0.1:8090\n  transmitters:\n    - {issuer: https://idp.example.com, audience: [a], jwksFile: f, "
	tests := []struct{ name, tail, want string }{
		{"poll with url", "poll: {url: https://idp.example.com/poll, interval: 10s, maxEvents: 50}}", ""},
		{"poll stream", "poll: {maxEvents: 5}, stream: {delivery: poll, eventsRequested: [session-revoked, " + signals.EventCredentialCompromise + "]}}", ""},
		{"push stream", "stream: {delivery: push, pushEndpoint: https://agentauth.example.org/ssf/events}}", ""},
		{"poll without url", "poll: {authorization: Bearer x}}", "poll.url"},
		{"poll url beside a poll stream", "poll: {url: https://idp.example.com/poll}, stream: {delivery: poll}}", "leave it out"},
		{"interval too short", "poll: {url: https://idp.example.com/poll, interval: 10ms}}", "poll.interval"},
		{"maxEvents negative", "poll: {url: https://idp.example.com/poll, maxEvents: -1}}", "poll.maxEvents"},
		{"unknown delivery", "stream: {delivery: webhook}}", "stream.delivery"},
		{"push without endpoint", "stream: {delivery: push}}", "stream.pushEndpoint"},
		{"push endpoint on a poll stream", "stream: {delivery: poll, pushEndpoint: https://a.example/ssf/events}}", "only for push"},
		{"unknown event", "stream: {delivery: poll, eventsRequested: [session-ended]}}", "session-ended"},
		{"unknown key", "stream: {delivery: poll, configurationURL: https://idp.example.com}}", "configurationURL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(validConfig + base + tt.tail + "\n"))
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestSSFStreamsFileImported: a controller of an earlier version kept its stream ids in dataDir/ssf-streams.json.
// At start that file is moved into the store and removed, and the stream it names is found and verified, not
// created again; a restart finds it in the store.
func TestSSFStreamsFileImported(t *testing.T) {
	tr := newTransmitter(t)
	cfg := ssfConfig(t, fmt.Sprintf(`ssf:
  listen: 127.0.0.1:0
  transmitters:
    - issuer: %s
      audience: [%s]
      jwksURL: %s/jwks
      stream: {authorization: %q, delivery: poll, eventsRequested: [session-revoked]}
`, tr.Issuer, ssfAudience, tr.Issuer, mgmtToken))
	// The stream the earlier controller created, and its file.
	client, err := signals.Discover(context.Background(), signals.StreamClientConfig{Issuer: tr.Issuer, Authorization: mgmtToken})
	if err != nil {
		t.Fatal(err)
	}
	old, err := client.CreateStream(context.Background(), signals.StreamRequest{EventsRequested: []string{signals.EventSessionRevoked}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(cfg.DataDir, "ssf-streams.json")
	if err := os.WriteFile(file, fmt.Appendf(nil, `{%q: %q}`, tr.Issuer, old.StreamID), 0o600); err != nil {
		t.Fatal(err)
	}

	c, stop := runController(t, cfg)
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.Issuer) == "1" })
	if n := tr.Counts(); n.Created != 1 {
		t.Fatalf("created %d streams; want the one of the file reused", n.Created)
	}
	if id, err := c.store.SSFStreamID(tr.Issuer); err != nil || id != old.StreamID {
		t.Fatalf("stored stream id %q, %v; want %q", id, err, old.StreamID)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s is still there: %v", file, err)
	}
	stop()
	c2, _ := runController(t, cfg)
	waitFor(t, "the stream to be verified after a restart", func() bool { return streamVerified(t, c2, tr.Issuer) == "1" })
	if n := tr.Counts(); n.Created != 1 || n.Verifications != 2 {
		t.Fatalf("after a restart: created %d streams, %d verifications", n.Created, n.Verifications)
	}
}

// TestImportStreamsFile: the ids of the file go into the store, except where the store holds one already (it
// is newer); the file is removed, also when it does not parse; without a file nothing happens.
func TestImportStreamsFile(t *testing.T) {
	for _, tt := range []struct {
		name, file string // file "" means none
		want       map[string]string
	}{
		{"no file", "", map[string]string{"https://a": "", "https://b": "kept"}},
		{"ids imported, stored ones kept", `{"https://a": "s-a", "https://b": "old", "": "x", "https://c": ""}`,
			map[string]string{"https://a": "s-a", "https://b": "kept", "https://c": ""}},
		{"unparsable", `{"https://a": `, map[string]string{"https://a": "", "https://b": "kept"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.SetSSFStreamID("https://b", "kept"); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "ssf-streams.json")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := importStreamsFile(st, path, zaptest.NewLogger(t)); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the file is still there: %v", err)
			}
			for issuer, want := range tt.want {
				if got, err := st.SSFStreamID(issuer); err != nil || got != want {
					t.Errorf("%s: %q, %v; want %q", issuer, got, err, want)
				}
			}
		})
	}
}
