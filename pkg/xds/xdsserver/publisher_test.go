package xdsserver

import (
	"crypto/tls"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/internal/testca"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/store"
	"github.com/agentauth/agentauth/pkg/wire"
	"github.com/agentauth/agentauth/pkg/xds"
)

// The end-to-end tests of a server with real clients are in pkg/xds/xdsclient; these need the server's insides.

const permitAll = `permit (principal, action, resource);`

var (
	td           = spiffeid.RequireTrustDomainFromString("example.org")
	controllerID = wire.ControllerID(td)
)

// waitFor polls cond until it holds. The timeout only stops a broken test from hanging; nothing is timed.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cedarValidator compiles a policy with cedar-go, as the controller does before it stores one.
func cedarValidator(_ string, res proto.Message) error {
	p := res.(*agentauthv1.Policy)
	_, err := cedar.NewPolicySetFromBytes(p.GetSource(), []byte(p.GetCedar()))
	return err
}

func policy(id, text string) *agentauthv1.Policy {
	return &agentauthv1.Policy{Id: id, Cedar: text, Source: id + ".cedar"}
}

func spiffeRevocation(id, subject string) *agentauthv1.Revocation {
	return &agentauthv1.Revocation{Id: id, Subject: &agentauthv1.Subject{Kind: "spiffe", Value: subject},
		Reason: "credential compromised"}
}

func trustBundle(ca *testca.CA, seq int64) *agentauthv1.TrustBundle {
	var ders [][]byte
	for _, c := range ca.X509Authorities() {
		ders = append(ders, c.Raw)
	}
	return &agentauthv1.TrustBundle{TrustDomain: ca.TrustDomain().Name(), X509Authorities: ders, Sequence: seq}
}

func TestPublisherRefusesBadInput(t *testing.T) {
	ca := testca.New(t, td)
	st, err := store.Open(filepath.Join(t.TempDir(), "controller.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := NewPublisher(st, PublisherConfig{Validators: map[string]xds.Validator{agentauthv1.PolicyType: cedarValidator}})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.SetPolicies([]*agentauthv1.Policy{policy("good", permitAll)}); err != nil {
		t.Fatal(err)
	}
	if err := pub.SetTrustBundle(trustBundle(ca, 5)); err != nil {
		t.Fatal(err)
	}
	version, _ := st.Version()
	waitFor(t, "the policy cache to hold one policy", func() bool { return len(cacheNames(pub.caches[agentauthv1.PolicyType])) == 1 })

	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"policy without text", func() error {
			return pub.SetPolicies([]*agentauthv1.Policy{policy("good", permitAll), policy("empty", "")})
		}, autherr.ErrMalformed},
		{"policy that does not compile", func() error {
			return pub.SetPolicies([]*agentauthv1.Policy{policy("bad", "permit (principal,")})
		}, autherr.ErrMalformed},
		{"duplicate policy ids", func() error {
			return pub.SetPolicies([]*agentauthv1.Policy{policy("a", permitAll), policy("a", permitAll)})
		}, autherr.ErrMalformed},
		{"revocation without subject", func() error {
			return pub.UpsertRevocation(&agentauthv1.Revocation{Id: "r"})
		}, autherr.ErrMalformed},
		{"revocation without id", func() error {
			r := spiffeRevocation("", "spiffe://example.org/a")
			return pub.UpsertRevocation(r)
		}, autherr.ErrMalformed},
		{"subject kind with odd characters", func() error {
			r := spiffeRevocation("r", "spiffe://example.org/a")
			r.Subject.Kind = "Spiffe ID"
			return pub.UpsertRevocation(r)
		}, autherr.ErrMalformed},
		{"invalid timestamp", func() error {
			r := spiffeRevocation("r", "spiffe://example.org/a")
			r.NotBefore = &timestamppb.Timestamp{Seconds: 1, Nanos: -5}
			return pub.UpsertRevocation(r)
		}, autherr.ErrMalformed},
		{"bundle with garbage DER", func() error {
			return pub.SetTrustBundle(&agentauthv1.TrustBundle{TrustDomain: "example.org", X509Authorities: [][]byte{{0x30, 0x03, 1, 2, 3}}, Sequence: 9})
		}, autherr.ErrMalformed},
		{"bundle with bad JWKS", func() error {
			return pub.SetTrustBundle(&agentauthv1.TrustBundle{TrustDomain: "example.org", JwtAuthoritiesJwks: []byte(`{"keys":[{"kty":"EC"}]}`), Sequence: 9})
		}, autherr.ErrMalformed},
		{"bundle for a bad trust domain", func() error {
			b := trustBundle(ca, 9)
			b.TrustDomain = "Example.ORG/x"
			return pub.SetTrustBundle(b)
		}, autherr.ErrMalformed},
		{"older bundle", func() error { return pub.SetTrustBundle(trustBundle(ca, 4)) }, autherr.ErrMalformed},
		{"deleting an unknown revocation", func() error { return pub.DeleteRevocation("nope") }, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do()
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Log(err)
			if v, _ := st.Version(); v != version {
				t.Fatalf("store changed (version %d → %d)", version, v)
			}
		})
	}
	if got := cacheNames(pub.caches[agentauthv1.PolicyType]); !slices.Equal(got, []string{"good"}) {
		t.Errorf("policy cache holds %v, want [good]", got)
	}
}

func TestNewServerRefusesTLSWithoutClientAuth(t *testing.T) {
	ca := testca.New(t, td)
	st, err := store.Open(t.TempDir()+"/s.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pub, err := NewPublisher(st, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	svid := ca.CreateX509SVID(controllerID)
	noClientAuth := tlsconfig.TLSServerConfig(svid)
	unverified := tlsconfig.TLSServerConfig(svid)
	unverified.ClientAuth = tls.RequireAnyClientCert
	for name, conf := range map[string]*tls.Config{"nil": nil, "no client auth": noClientAuth, "unverified": unverified} {
		if _, err := NewServer(pub, ServerConfig{TLSConfig: conf}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
