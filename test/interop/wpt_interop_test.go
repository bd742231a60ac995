//go:build interop

package interop

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/replay"
	"github.com/agentauth/agentauth/pkg/wpt"
)

const (
	wptSub = "spiffe://example.org/ns/agents/sa/planner"
	wptAud = "https://tool.example.org/mcp"
)

type wptVerifyOut struct {
	OK    bool   `json:"ok"`
	Sub   string `json:"sub"`
	JTI   string `json:"jti"`
	Error string `json:"error"`
}

// TestWPTOursVerifiedByJose: WIT and WPT minted by pkg/wpt verify with node jose.
func TestWPTOursVerifiedByJose(t *testing.T) {
	requireNode(t, "jose")
	issuerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := wpt.NewIssuer(issuerKey, "go-issuer-1", "ES256")
	if err != nil {
		t.Fatal(err)
	}
	issuerJWK := jose.JSONWebKey{Key: issuerKey.Public(), KeyID: "go-issuer-1", Algorithm: "ES256"}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for alg, key := range map[string]crypto.Signer{"EdDSA": edKey, "ES256": ecKey} {
		t.Run(alg, func(t *testing.T) {
			now := time.Now()
			wit, err := issuer.Mint(wpt.WITClaims{Subject: wptSub, Issuer: "https://go-issuer.example", ID: "w1",
				IssuedAt: now, Expiry: now.Add(time.Hour), Key: key.Public(), KeyAlg: alg})
			if err != nil {
				t.Fatal(err)
			}
			prover, err := wpt.NewProver(wit, key)
			if err != nil {
				t.Fatal(err)
			}
			proof, err := prover.Mint(wpt.ProofParams{Audience: wptAud, AccessToken: "at-1", TxnToken: "txn-1"})
			if err != nil {
				t.Fatal(err)
			}
			in := map[string]any{"issuerJwk": issuerJWK, "wit": wit, "wpt": proof, "aud": wptAud,
				"accessToken": "at-1", "txnToken": "txn-1"}
			var out wptVerifyOut
			runNode(t, "wpt_verify.mjs", in, &out)
			if !out.OK || out.Sub != wptSub || out.JTI == "" {
				t.Fatalf("jose rejected our tokens: %+v", out)
			}
			// The script really checks: a wrong audience or a wrong bound token fails.
			in["aud"] = "https://elsewhere.example/"
			runNode(t, "wpt_verify.mjs", in, &out)
			if out.OK {
				t.Fatal("jose accepted a WPT for another audience")
			}
			in["aud"], in["txnToken"] = wptAud, "txn-2"
			runNode(t, "wpt_verify.mjs", in, &out)
			if out.OK || !strings.Contains(out.Error, "tth") {
				t.Fatalf("jose accepted a WPT bound to another Txn-Token: %+v", out)
			}
		})
	}
}

type wptMintOut struct {
	IssuerJWK jose.JSONWebKey `json:"issuerJwk"`
	WIT       string          `json:"wit"`
	WPT       string          `json:"wpt"`
}

// TestWPTJoseVerifiedByOurs: WIT and WPT minted by node jose verify with pkg/wpt.
func TestWPTJoseVerifiedByOurs(t *testing.T) {
	requireNode(t, "jose")
	for _, alg := range []string{"EdDSA", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			var out wptMintOut
			runNode(t, "wpt_mint.mjs", map[string]any{"sub": wptSub, "aud": wptAud, "workloadAlg": alg,
				"accessToken": "at-1", "txnToken": "txn-1"}, &out)
			if out.IssuerJWK.KeyID == "" || !out.IssuerJWK.IsPublic() {
				t.Fatalf("issuer JWK %+v", out.IssuerJWK)
			}
			td := spiffeid.RequireTrustDomainFromString("example.org")
			v, err := wpt.NewVerifier(wpt.VerifierConfig{
				Bundles: wpt.FromJWTBundles(jwtbundle.FromJWTAuthorities(td, map[string]crypto.PublicKey{out.IssuerJWK.KeyID: out.IssuerJWK.Key})),
				Replay:  replay.New(replay.Options{}),
			})
			if err != nil {
				t.Fatal(err)
			}
			req := wpt.Request{WIT: out.WIT, WPT: out.WPT, Audiences: []string{wptAud}, AccessToken: "at-1", TxnToken: "txn-1"}
			res, err := v.VerifyRequest(context.Background(), req)
			if err != nil {
				t.Fatalf("our verifier rejected jose's tokens: %v", err)
			}
			if res.WIT.Subject != wptSub || res.WIT.Key.Algorithm != alg || res.Audience != wptAud || res.WIT.Issuer != "https://node-issuer.example" {
				t.Fatalf("result %+v, WIT %+v", res, res.WIT)
			}
			if _, err := v.VerifyRequest(context.Background(), req); !errors.Is(err, autherr.ErrReplay) {
				t.Fatalf("second use: %v, want replay", err)
			}
			req.AccessToken = "at-2"
			if _, err := v.VerifyRequest(context.Background(), req); !errors.Is(err, autherr.ErrMismatch) {
				t.Fatalf("other access token: %v, want binding mismatch", err)
			}
		})
	}
}
