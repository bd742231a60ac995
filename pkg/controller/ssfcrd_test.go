package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap/zaptest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/agentauth/agentauth/pkg/crd"
	"github.com/agentauth/agentauth/pkg/signals"
	"github.com/agentauth/agentauth/pkg/store"
)

// secretsOf serves Secrets from a map of name → key → value, as the informer's cache does.
func secretsOf(m map[string]map[string]string) secretFunc {
	return func(field, name, key string) ([]byte, error) {
		sec, ok := m[name]
		if !ok {
			return nil, refuseObject(reasonSecretNotFound, "%s: Secret %s not found", field, name)
		}
		v, ok := sec[key]
		if !ok {
			return nil, refuseObject(reasonSecretNotFound, "%s: Secret %s has no key %q", field, name, key)
		}
		return []byte(v), nil
	}
}

func ref(name, key string) *crd.SecretKeyRef { return &crd.SecretKeyRef{Name: name, Key: key} }

func transmitterObject(name, issuer string, created time.Time, spec func(*crd.SSFTransmitterSpec)) crd.SSFTransmitter {
	o := crd.SSFTransmitter{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec: crd.SSFTransmitterSpec{Issuer: issuer, Audience: []string{ssfAudience}, JWKSSecretRef: ref("idp", "jwks.json")}}
	if spec != nil {
		spec(&o.Spec)
	}
	return o
}

// signingKey is a transmitter's private key and its public JWK Set.
func signingKey(t *testing.T, kid string) (jose.JSONWebKey, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	return k, string(b)
}

func TestTransmitterFromObject(t *testing.T) {
	_, jwks := signingKey(t, "k1")
	secrets := secretsOf(map[string]map[string]string{
		"idp": {"jwks.json": jwks, "push": "Bearer push\n", "poll": "Bearer poll", "mgmt": "Bearer mgmt"},
	})
	now := time.Now()
	tests := []struct {
		name       string
		spec       func(*crd.SSFTransmitterSpec)
		wantReason string // "" converts
		wantMsg    string
		check      func(t *testing.T, tc TransmitterConfig)
	}{
		{"JWKS and secrets by reference", func(s *crd.SSFTransmitterSpec) {
			s.PushAuthorizationSecretRef = ref("idp", "push")
			s.Poll = &crd.SSFPoll{URL: "https://idp.example.com/poll", Interval: "30s", MaxEvents: 50, AuthorizationSecretRef: ref("idp", "poll")}
		}, "", "", func(t *testing.T, tc TransmitterConfig) {
			if string(tc.jwks) != jwks || tc.JWKSURL != "" || tc.pushAuthorization() != "Bearer push" {
				t.Errorf("keys or push authorization: %+v", tc)
			}
			if p := tc.Poll; p.URL != "https://idp.example.com/poll" || p.Interval != 30*time.Second || p.MaxEvents != 50 ||
				p.authorization() != "Bearer poll" {
				t.Errorf("poll %+v", p)
			}
		}},
		{"JWKS URL and a push stream", func(s *crd.SSFTransmitterSpec) {
			s.JWKSSecretRef, s.JWKSURL = nil, "https://idp.example.com/jwks"
			s.Stream = &crd.SSFStream{Delivery: "push", PushEndpoint: "https://agentauth.example.org/ssf/events",
				EventsRequested: []string{"session-revoked"}, AuthorizationSecretRef: ref("idp", "mgmt")}
		}, "", "", func(t *testing.T, tc TransmitterConfig) {
			if tc.jwks != nil || tc.JWKSURL != "https://idp.example.com/jwks" || tc.Stream.authorization() != "Bearer mgmt" ||
				tc.Stream.Delivery != "push" {
				t.Errorf("%+v, stream %+v", tc, tc.Stream)
			}
		}},
		{"missing Secret", func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("gone", "jwks.json") },
			reasonSecretNotFound, "spec.jwksSecretRef: Secret gone not found", nil},
		{"missing key", func(s *crd.SSFTransmitterSpec) { s.PushAuthorizationSecretRef = ref("idp", "nope") },
			reasonSecretNotFound, `spec.pushAuthorizationSecretRef: Secret idp has no key "nope"`, nil},
		{"missing stream authorization", func(s *crd.SSFTransmitterSpec) {
			s.Stream = &crd.SSFStream{Delivery: "poll", AuthorizationSecretRef: ref("idp", "nope")}
		}, reasonSecretNotFound, "spec.stream.authorizationSecretRef", nil},
		{"bad interval", func(s *crd.SSFTransmitterSpec) {
			s.Poll = &crd.SSFPoll{URL: "https://idp.example.com/poll", Interval: "soon"}
		},
			reasonInvalidField, "spec.poll.interval", nil},
		{"interval too short", func(s *crd.SSFTransmitterSpec) {
			s.Poll = &crd.SSFPoll{URL: "https://idp.example.com/poll", Interval: "10ms"}
		},
			reasonInvalidField, "spec.poll.interval", nil},
		{"poll over plain http", func(s *crd.SSFTransmitterSpec) { s.Poll = &crd.SSFPoll{URL: "http://idp.example.com/poll"} },
			reasonInvalidField, "spec.poll.url", nil},
		{"poll without url", func(s *crd.SSFTransmitterSpec) { s.Poll = &crd.SSFPoll{} }, reasonInvalidField, "spec.poll.url", nil},
		{"push stream without endpoint", func(s *crd.SSFTransmitterSpec) { s.Stream = &crd.SSFStream{Delivery: "push"} },
			reasonInvalidField, "spec.stream.pushEndpoint", nil},
		{"unknown event", func(s *crd.SSFTransmitterSpec) {
			s.Stream = &crd.SSFStream{Delivery: "poll", EventsRequested: []string{"session-ended"}}
		}, reasonInvalidField, "session-ended", nil},
		{"no audience", func(s *crd.SSFTransmitterSpec) { s.Audience = nil }, reasonInvalidField, "spec.audience", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := transmitterObject("idp", "https://idp.example.com", now, tt.spec)
			tc, err := transmitterFromObject(&o, secrets)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.Issuer != "https://idp.example.com" || len(tc.Audience) != 1 {
					t.Errorf("%+v", tc)
				}
				tt.check(t, tc)
				return
			}
			var oe *objectError
			if !errors.As(err, &oe) || oe.reason != tt.wantReason || !strings.Contains(oe.Error(), tt.wantMsg) {
				t.Fatalf("error %v, want %s containing %q", err, tt.wantReason, tt.wantMsg)
			}
		})
	}
}

// newObjectsFixture is an ssfObjects on a receiver trusting the transmitter of configIssuer from the config, with
// Secrets served from secrets; it talks to no API server (apply only).
func newObjectsFixture(t *testing.T, configIssuer, configJWKS string, secrets map[string]map[string]string) *ssfObjects {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ct := TransmitterConfig{Issuer: configIssuer, Audience: []string{ssfAudience}, jwks: []byte(configJWKS)}
	rcv, err := signals.NewReceiver(signals.ReceiverConfig{Transmitters: []signals.TransmitterConfig{ct.receiverConfig()},
		Sink: signals.SinkFunc(func(context.Context, []signals.Change) error { return nil }), Dedup: signals.NewStoreDedup(st, nil)})
	if err != nil {
		t.Fatal(err)
	}
	c := &Controller{cfg: &Config{SSF: &SSFConfig{Transmitters: []TransmitterConfig{ct}}}}
	s := &ssfServer{c: c, rcv: rcv}
	o := &ssfObjects{s: s, log: zaptest.NewLogger(t)}
	o.clients = &objectClients{s: s, want: map[string]TransmitterConfig{}, runs: map[string]*clientRun{}}
	ss := secretsOf(secrets)
	o.secretFn = func(field, name, key string) ([]byte, error) { return ss(field, name, key) }
	return o
}

// TestSSFObjectsApply: the receiver trusts ssf.transmitters and the accepted objects, SETs signed by an object's
// transmitter verify while it is accepted and are refused once it is gone, and each object's verdict names what
// is wrong with it.
func TestSSFObjectsApply(t *testing.T) {
	const cfgIss, issA, issB = "https://config.example.com", "https://a.example.com", "https://b.example.com"
	cfgKey, cfgJWKS := signingKey(t, "cfg")
	keyA, jwksA := signingKey(t, "a")
	keyB, jwksB := signingKey(t, "b")
	secrets := map[string]map[string]string{"a": {"jwks": jwksA}, "b": {"jwks": jwksB}, "bad": {"jwks": `{"keys":[]}`}}
	o := newObjectsFixture(t, cfgIss, cfgJWKS, secrets)
	t0 := time.Now()
	objA := transmitterObject("a", issA, t0, func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("a", "jwks") })
	objB := transmitterObject("b", issB, t0.Add(time.Second), func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("b", "jwks") })
	// Newer than a, same issuer: a keeps it.
	objA2 := transmitterObject("a-again", issA, t0.Add(time.Minute), func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("b", "jwks") })
	objCfg := transmitterObject("config-issuer", cfgIss, t0, func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("b", "jwks") })
	objBad := transmitterObject("bad", "https://bad.example.com", t0, func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("bad", "jwks") })
	objGone := transmitterObject("gone", "https://gone.example.com", t0, func(s *crd.SSFTransmitterSpec) { s.JWKSSecretRef = ref("gone", "jwks") })

	type set struct {
		iss string
		key jose.JSONWebKey
		ok  bool
	}
	steps := []struct {
		name     string
		objs     []crd.SSFTransmitter
		verdicts map[string]string // object → reason
		sets     []set
	}{
		{"none", nil, nil, []set{{cfgIss, cfgKey, true}, {issA, keyA, false}}},
		{"a and b", []crd.SSFTransmitter{objB, objA}, map[string]string{"a": reasonConfigured, "b": reasonConfigured},
			[]set{{cfgIss, cfgKey, true}, {issA, keyA, true}, {issB, keyB, true}, {issA, keyB, false}}},
		{"conflicts and bad objects", []crd.SSFTransmitter{objA2, objB, objA, objCfg, objBad, objGone},
			map[string]string{"a": reasonConfigured, "b": reasonConfigured, "a-again": reasonIssuerConflict,
				"config-issuer": reasonIssuerConflict, "bad": reasonInvalidJWKS, "gone": reasonSecretNotFound},
			// The config's keys stay the config issuer's; a's stay a's.
			[]set{{cfgIss, cfgKey, true}, {cfgIss, keyB, false}, {issA, keyA, true}, {issA, keyB, false}, {issB, keyB, true}}},
		{"a deleted", []crd.SSFTransmitter{objB}, map[string]string{"b": reasonConfigured},
			[]set{{cfgIss, cfgKey, true}, {issA, keyA, false}, {issB, keyB, true}}},
		{"all deleted", []crd.SSFTransmitter{}, nil, []set{{cfgIss, cfgKey, true}, {issB, keyB, false}}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := map[string]string{}
			for _, v := range o.apply(st.objs) {
				got[v.obj.Name] = reasonConfigured
				if v.err != nil {
					got[v.obj.Name] = v.err.reason
					t.Logf("%s: %s: %v", v.obj.Name, v.err.reason, v.err)
				}
			}
			if len(got) != len(st.verdicts) {
				t.Errorf("verdicts %v, want %v", got, st.verdicts)
			}
			for name, want := range st.verdicts {
				if got[name] != want {
					t.Errorf("%s: %s, want %s", name, got[name], want)
				}
			}
			for i, s := range st.sets {
				tok, err := signals.Sign(s.key, signals.SETClaims{Issuer: s.iss, Audience: []string{ssfAudience},
					Subject: agent("x"), Events: map[string]map[string]any{signals.EventSessionRevoked: nil}})
				if err != nil {
					t.Fatal(err)
				}
				_, err = o.s.rcv.Process(context.Background(), tok)
				if (err == nil) != s.ok {
					t.Errorf("SET %d from %s signed by %s: %v, want accepted %v", i, s.iss, s.key.KeyID, err, s.ok)
				}
			}
		})
	}
}

func TestSSFTransmitterObjectsConfig(t *testing.T) {
	const kubeState = "state: {backend: kubernetes, kubernetes: {namespace: agentauth, kubeconfig: /etc/kube.yaml}}\n"
	tests := []struct {
		name, doc, want string
		check           func(t *testing.T, o *SSFObjectsConfig)
	}{
		{"objects only", "ssf: {listen: 127.0.0.1:8090, transmitterObjects: {namespace: agentauth}}", "",
			func(t *testing.T, o *SSFObjectsConfig) {
				if o.Namespace != "agentauth" || o.Kubeconfig != "" {
					t.Errorf("%+v", o)
				}
			}},
		{"defaults from state.kubernetes", "ssf: {listen: 127.0.0.1:8090, transmitterObjects: {}}\n" + kubeState, "",
			func(t *testing.T, o *SSFObjectsConfig) {
				if o.Namespace != "agentauth" || o.Kubeconfig != "/etc/kube.yaml" {
					t.Errorf("%+v", o)
				}
			}},
		{"own namespace beside state.kubernetes", "ssf: {listen: 127.0.0.1:8090, transmitterObjects: {namespace: idp, kubeconfig: /k}}\n" + kubeState, "",
			func(t *testing.T, o *SSFObjectsConfig) {
				if o.Namespace != "idp" || o.Kubeconfig != "/k" {
					t.Errorf("%+v", o)
				}
			}},
		{"no namespace", "ssf: {listen: 127.0.0.1:8090, transmitterObjects: {}}", "ssf.transmitterObjects.namespace", nil},
		{"bad namespace", "ssf: {listen: 127.0.0.1:8090, transmitterObjects: {namespace: Not_A_Label}}", "ssf.transmitterObjects.namespace", nil},
		{"neither transmitters nor objects", "ssf: {listen: 127.0.0.1:8090}", "ssf.transmitters", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(validConfig + tt.doc + "\n"))
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want an error naming %s", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg.SSF.TransmitterObjects)
		})
	}
}

// unreachableKubeconfig is a kubeconfig of an API server that is not there (a closed loopback port): the object
// watch never lists, and the test hands objects to apply itself.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	doc := `apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:1"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
users: [{name: none, user: {token: x}}]
current-context: none
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSSFObjectClients: the stream of an accepted object's transmitter is created, polled and verified while the
// controller runs its singleton work, and its SETs applied; once the object is gone its clients stop and its SETs
// are refused.
func TestSSFObjectClients(t *testing.T) {
	tr := newTransmitter(t)
	cfg := ssfConfig(t, fmt.Sprintf("ssf:\n  listen: 127.0.0.1:0\n  transmitterObjects: {namespace: agentauth, kubeconfig: %s}\n",
		unreachableKubeconfig(t)))
	c, _ := runController(t, cfg)
	var o *ssfObjects
	for _, comp := range c.components {
		if so, ok := comp.(*ssfObjects); ok {
			o = so
		}
	}
	if o == nil {
		t.Fatal("no ssfObjects component")
	}
	o.secretFn = secretsOf(map[string]map[string]string{"mgmt": {"token": mgmtToken}})
	obj := transmitterObject("idp", tr.Issuer, time.Now(), func(s *crd.SSFTransmitterSpec) {
		s.JWKSSecretRef, s.JWKSURL = nil, tr.Issuer+"/jwks"
		s.Poll = &crd.SSFPoll{MaxEvents: 10}
		s.Stream = &crd.SSFStream{Delivery: "poll", AuthorizationSecretRef: ref("mgmt", "token")}
	})
	if v := o.apply([]crd.SSFTransmitter{obj}); len(v) != 1 || v[0].err != nil {
		t.Fatalf("verdicts %+v", v)
	}
	waitFor(t, "the stream to be verified", func() bool { return streamVerified(t, c, tr.Issuer) == "1" })
	tr.Enqueue(signEvent(tr, "polled", agent("a"), signals.EventSessionRevoked))
	waitFor(t, "the polled SET's revocation", func() bool { _, ok := revokedBy(t, c, "polled"); return ok })

	o.apply(nil)
	o.clients.mu.Lock()
	n := len(o.clients.runs)
	o.clients.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d clients still run", n)
	}
	if v := streamVerified(t, c, tr.Issuer); v != "" {
		t.Errorf("the gone transmitter's stream is still reported verified: %q", v)
	}
	var se *signals.SETError
	if _, err := o.s.rcv.Process(context.Background(), signEvent(tr, "after", agent("a"), signals.EventSessionRevoked).Token); !errors.As(err, &se) ||
		se.Code != signals.CodeInvalidIssuer {
		t.Fatalf("a SET of the gone transmitter: %v", err)
	}
}
