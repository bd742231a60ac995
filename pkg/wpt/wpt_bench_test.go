package wpt

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/agentauth/agentauth/pkg/replay"
)

var benchAlgs = []string{"ES256", "EdDSA"}

// benchRequests pre-mints n distinct proofs (each jti may be accepted once).
func benchRequests(b *testing.B, e *env, n int) []Request {
	b.Helper()
	p := e.prover(b)
	reqs := make([]Request, n)
	for i := range reqs {
		wpt, err := p.Mint(ProofParams{Audience: testAud, AccessToken: "access-token", Now: testNow})
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = Request{WIT: e.wit, WPT: wpt, Audiences: []string{testAud}, AccessToken: "access-token"}
	}
	return reqs
}

func BenchmarkMintWPT(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			p := newEnv(b, alg).prover(b)
			pp := ProofParams{Audience: testAud, AccessToken: "access-token", Now: testNow}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Mint(pp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchVerifyRequest(b *testing.B, cacheSize int) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, alg)
			v := e.verifier(b, func(c *VerifierConfig) {
				c.WITCacheSize = cacheSize
				c.Replay = replay.New(replay.Options{MaxEntries: b.N + 1, Now: e.now})
			})
			reqs := benchRequests(b, e, b.N)
			ctx := context.Background()
			if _, err := v.VerifyWIT(ctx, e.wit); err != nil { // warm the cache (a no-op when it is off)
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := v.VerifyRequest(ctx, reqs[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyRequest_WITCacheHit is the ingress hot path: the WIT was seen before, the WPT is new.
func BenchmarkVerifyRequest_WITCacheHit(b *testing.B) { benchVerifyRequest(b, 0) }

// BenchmarkVerifyRequest_WITCacheMiss verifies the issuer's ES256 signature on the WIT as well on every call.
func BenchmarkVerifyRequest_WITCacheMiss(b *testing.B) { benchVerifyRequest(b, -1) }

// benchPayload is a signing input of the size of a WPT's (header.payload).
var benchPayload = make([]byte, 330)

// BenchmarkRawSign is the floor for BenchmarkMintWPT: the bare signature of the same algorithm.
func BenchmarkRawSign(b *testing.B) {
	b.Run("ES256", func(b *testing.B) {
		k := mustP256(b)
		for b.Loop() {
			h := sha256.Sum256(benchPayload)
			if _, err := ecdsa.SignASN1(rand.Reader, k, h[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EdDSA", func(b *testing.B) {
		k := mustEd25519(b)
		for b.Loop() {
			ed25519.Sign(k, benchPayload)
		}
	})
}

// BenchmarkRawVerify is the floor for BenchmarkVerifyRequest_WITCacheHit: one bare verification of the workload's
// algorithm, which is all the cryptography a cache hit needs.
func BenchmarkRawVerify(b *testing.B) {
	b.Run("ES256", func(b *testing.B) {
		k := mustP256(b)
		h := sha256.Sum256(benchPayload)
		sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			h := sha256.Sum256(benchPayload)
			if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
				b.Fatal("verify")
			}
		}
	})
	b.Run("EdDSA", func(b *testing.B) {
		k := mustEd25519(b)
		sig := ed25519.Sign(k, benchPayload)
		pub := k.Public().(ed25519.PublicKey)
		for b.Loop() {
			if !ed25519.Verify(pub, benchPayload, sig) {
				b.Fatal("verify")
			}
		}
	})
}
