package wpt_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/exp/bundle/witbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

func Example() {
	// The identity server signs a WIT binding the workload's key to its identifier.
	issuerKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	issuer, _ := wpt.NewIssuer(issuerKey, "2026-1", "ES256")
	workloadPub, workloadKey, _ := ed25519.GenerateKey(rand.Reader)
	wit, _ := issuer.Mint(wpt.WITClaims{Subject: "spiffe://example.org/agent", Expiry: time.Now().Add(time.Hour),
		Key: workloadPub, KeyAlg: "EdDSA"})

	// The workload proves possession once per request.
	prover, _ := wpt.NewProver(wit, workloadKey)
	proof, _ := prover.Mint(wpt.ProofParams{Audience: "https://tool.example.org/mcp"})

	// The receiver trusts example.org's issuer key and checks both tokens.
	td := spiffeid.RequireTrustDomainFromString("example.org")
	verifier, _ := wpt.NewVerifier(wpt.VerifierConfig{
		Bundles: wpt.FromWITBundles(witbundle.FromWITAuthorities(td, map[string]crypto.PublicKey{"2026-1": issuerKey.Public()})),
		Replay:  replay.New(replay.Options{}),
	})
	res, err := verifier.VerifyRequest(context.Background(), wpt.Request{WIT: wit, WPT: proof,
		Audiences: []string{"https://tool.example.org/mcp"}})
	fmt.Println(res.WIT.Subject, err)
	// Output: spiffe://example.org/agent <nil>
}
