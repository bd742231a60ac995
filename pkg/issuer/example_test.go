package issuer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauth/agentauth/pkg/issuer"
	"github.com/agentauth/agentauth/pkg/store"
)

func Example() {
	dir, _ := os.MkdirTemp("", "issuer-example")
	defer os.RemoveAll(dir)
	st, _ := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	defer st.Close()
	keys, _ := issuer.NewFileKeyStore(filepath.Join(dir, "keys"))

	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca, err := issuer.New(context.Background(), issuer.Config{TrustDomain: td, Keys: keys, Store: issuer.NewBoltStore(st)})
	if err != nil {
		panic(err)
	}
	id := spiffeid.RequireFromString("spiffe://example.org/agent/a")
	token, _ := ca.CreateJoinToken(context.Background(), id, time.Hour) // hand to the sidecar out of band
	attested, _ := ca.Attest(context.Background(), token)               // what the gRPC service does first

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, _ := ca.IssueX509SVID(context.Background(), key.Public(), attested, time.Hour)
	got, _, err := x509svid.Verify(chain, ca.X509Bundle())
	fmt.Println(got, err)
	_, err = ca.Attest(context.Background(), token)
	fmt.Println(err != nil)
	// Output:
	// spiffe://example.org/agent/a <nil>
	// true
}
