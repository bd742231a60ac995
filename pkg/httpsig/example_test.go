package httpsig_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/httpsig"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

// A client signs a request with its WIT and key; the server verifies it against the WIT issuer's bundle.
func Example() {
	// Setup: a trust domain's WIT issuer, and a workload WIT binding an Ed25519 key.
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuer, _ := wpt.NewIssuer(issuerKey, "k1", "ES256")
	_, workloadKey, _ := ed25519.GenerateKey(rand.Reader)
	wit, _ := issuer.Mint(wpt.WITClaims{Subject: "spiffe://example.org/agent", Expiry: time.Now().Add(time.Hour),
		Key: workloadKey.Public(), KeyAlg: "EdDSA"})
	td := spiffeid.RequireTrustDomainFromString("example.org")
	bundles := jwtbundle.NewSet(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{"k1": issuerKey.Public()}))
	wits, _ := wpt.NewVerifier(wpt.VerifierConfig{Bundles: wpt.FromJWTBundles(bundles), Replay: replay.New(replay.Options{})})

	// Client: sign.
	signer, _ := httpsig.NewSigner(wit, workloadKey, httpsig.SignerOptions{})
	body := []byte(`{"q":"weather"}`)
	req, _ := http.NewRequest(http.MethodPost, "https://tool.example.org/search", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	if err := signer.SignRequest(req, body); err != nil {
		fmt.Println(err)
		return
	}

	// Server: verify.
	verifier, _ := httpsig.NewVerifier(httpsig.VerifierConfig{WITs: wits, Replay: replay.New(replay.Options{}),
		Audiences: []string{"https://tool.example.org/search"}})
	res, err := verifier.VerifyRequest(context.Background(), req, body)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println(res.WIT.Subject)
	fmt.Println(strings.Join(res.Covered, " "))
	// Output:
	// spiffe://example.org/agent
	// "@method" "@request-target" "workload-identity-token" "content-type" "content-digest"
}
