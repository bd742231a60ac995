package wpt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/replay"
)

// The token benchmarks sit beside the bare signature primitive of the same algorithm (BenchmarkRawSign,
// BenchmarkRawVerify). Because shared machines are noisy, MintWPT and VerifyRequest also time that primitive on the
// same signing input, interleaved with them in blocks (pairedRatio), and report "x-raw": the median over the blocks
// of what minting or verifying a whole WPT costs relative to the one signature operation it cannot avoid, with the
// quartiles as x-raw-q1 and x-raw-q3. A block that a burst of other work slowed is one sample among many, and
// both halves of a block run at the same core speed, so the ratio needs no separate speed correction.

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

// rawOps returns the bare signature primitive of key's algorithm over input: sign, and verify of one signature
// made beforehand. ECDSA uses its ASN.1 form, so neither side pays for JWS encoding.
func rawOps(b *testing.B, key crypto.Signer, input []byte) (sign func() error, verify func() bool) {
	b.Helper()
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig := ed25519.Sign(k, input)
		pub := k.Public().(ed25519.PublicKey)
		return func() error { ed25519.Sign(k, input); return nil },
			func() bool { return ed25519.Verify(pub, input, sig) }
	case *ecdsa.PrivateKey:
		h := sha256.Sum256(input)
		sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		if err != nil {
			b.Fatal(err)
		}
		return func() error {
				h := sha256.Sum256(input)
				_, err := ecdsa.SignASN1(rand.Reader, k, h[:])
				return err
			}, func() bool {
				h := sha256.Sum256(input)
				return ecdsa.VerifyASN1(&k.PublicKey, h[:], sig)
			}
	}
	b.Fatalf("no raw primitive for %T", key)
	return nil, nil
}

// pairedRatio runs op b.N times (op(i) for the i-th) in blocks, each followed by as many raw operations with the
// timer stopped, and reports the ratio of their times as described above. The times are the CPU time of the
// benchmark's own thread (threadCPU) where the OS gives it, so the time other processes held the core is not counted.
func pairedRatio(b *testing.B, op func(i int) error, raw func() error) {
	b.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const block = 16
	var ratios []float64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; {
		n := min(block, b.N-i)
		t0 := threadCPU()
		for j := range n {
			if err := op(i + j); err != nil {
				b.Fatal(err)
			}
		}
		d := threadCPU() - t0
		b.StopTimer() // reads memory statistics: kept out of both timings
		t1 := threadCPU()
		for range n {
			if err := raw(); err != nil {
				b.Fatal(err)
			}
		}
		ratios = append(ratios, float64(d)/float64(threadCPU()-t1))
		b.StartTimer()
		i += n
	}
	slices.Sort(ratios)
	q := func(p float64) float64 { return ratios[int(p*float64(len(ratios)-1))] }
	b.ReportMetric(q(0.5), "x-raw")
	b.ReportMetric(q(0.25), "x-raw-q1")
	b.ReportMetric(q(0.75), "x-raw-q3")
}

var wallStart = time.Now()

func wallClock() time.Duration { return time.Since(wallStart) }

// signingInput is header.payload of a compact JWS.
func signingInput(token string) []byte { return []byte(token[:strings.LastIndexByte(token, '.')]) }

func BenchmarkMintWPT(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, alg)
			p := e.prover(b)
			pp := ProofParams{Audience: testAud, AccessToken: "access-token", Now: testNow}
			sample, err := p.Mint(pp)
			if err != nil {
				b.Fatal(err)
			}
			rawSign, _ := rawOps(b, e.workloadKey, signingInput(sample))
			pairedRatio(b, func(int) error { _, err := p.Mint(pp); return err }, rawSign)
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
			_, rawVerify := rawOps(b, e.workloadKey, signingInput(reqs[0].WPT))
			ctx := context.Background()
			if _, err := v.VerifyWIT(ctx, e.wit); err != nil { // warm the cache (a no-op when it is off)
				b.Fatal(err)
			}
			pairedRatio(b, func(i int) error { _, err := v.VerifyRequest(ctx, reqs[i]); return err }, func() error {
				if !rawVerify() {
					return errors.New("raw verify failed")
				}
				return nil
			})
		})
	}
}

// BenchmarkVerifyRequest_WITCacheHit is the ingress hot path: the WIT was seen before, the WPT is new. Its x-raw is
// against one verification of the workload's algorithm, which is all the cryptography a cache hit needs.
func BenchmarkVerifyRequest_WITCacheHit(b *testing.B) { benchVerifyRequest(b, 0) }

// BenchmarkVerifyRequest_WITCacheMiss verifies the issuer's ES256 signature on the WIT as well on every call (its
// x-raw is still against the workload's one verification, so it includes the WIT's).
func BenchmarkVerifyRequest_WITCacheMiss(b *testing.B) { benchVerifyRequest(b, -1) }

// benchPayload is a signing input of the size of a WPT's (header.payload).
var benchPayload = make([]byte, 330)

// BenchmarkRawSign is the floor for BenchmarkMintWPT: the bare signature of the same algorithm.
func BenchmarkRawSign(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			sign, _ := rawOps(b, newEnv(b, alg).workloadKey, benchPayload)
			for b.Loop() {
				if err := sign(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawVerify is the floor for BenchmarkVerifyRequest_WITCacheHit: one bare verification of the workload's
// algorithm.
func BenchmarkRawVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			_, verify := rawOps(b, newEnv(b, alg).workloadKey, benchPayload)
			for b.Loop() {
				if !verify() {
					b.Fatal("verify")
				}
			}
		})
	}
}
