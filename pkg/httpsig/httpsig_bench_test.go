package httpsig

import (
	"context"
	"crypto"
	"net/http"
	"testing"
	"time"

	"github.com/agentauth/agentauth/pkg/wire"
)

// The profile benchmarks sit beside the raw signature primitive of the same algorithm, so the cost the profile adds
// (signature base, structured fields, digest, WIT cache lookup, replay cache) reads directly off the two lines.
// Because shared machines are noisy, SignRequest and VerifyRequest also time the raw primitive on the same base in
// every iteration and report the paired ratio as "x-raw".

var benchAlgs = []string{"ES256", "EdDSA"}

const benchBody = `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"weather in Paris"}}}`

func benchRequest(b *testing.B) *http.Request {
	r, err := http.NewRequest(http.MethodPost, envAud+"?session=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

func BenchmarkSignRequest(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b)
			s, key, _ := e.workload(b, alg, SignerOptions{})
			_, _, base := rawBase(b, s, key)
			r := benchRequest(b)
			body := []byte(benchBody)
			var profile, raw time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Header = http.Header{"Content-Type": {"application/json"}}
				t0 := time.Now()
				if err := s.SignRequest(r, body); err != nil {
					b.Fatal(err)
				}
				profile += time.Since(t0)
				b.StopTimer() // reads memory stats: keep it out of both timings
				t1 := time.Now()
				if _, err := s.Algorithm().Sign(key, base); err != nil {
					b.Fatal(err)
				}
				raw += time.Since(t1)
				b.StartTimer()
			}
			b.ReportMetric(float64(profile)/float64(raw), "x-raw")
		})
	}
}

func BenchmarkVerifyRequest(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b)
			s, key, wit := e.workload(b, alg, SignerOptions{})
			_, _, base := rawBase(b, s, key)
			rawSig, err := s.Algorithm().Sign(key, base)
			if err != nil {
				b.Fatal(err)
			}
			v := e.verifier(b, nil)
			if _, err := e.witVer.VerifyWIT(context.Background(), wit); err != nil { // warm the WIT cache
				b.Fatal(err)
			}
			body := []byte(benchBody)
			// Every request needs its own nonce, so they are signed before the timer starts.
			reqs := make([]*http.Request, b.N)
			for i := range reqs {
				reqs[i] = benchRequest(b)
				if err := s.SignRequest(reqs[i], body); err != nil {
					b.Fatal(err)
				}
			}
			var profile, raw time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := v.VerifyRequest(context.Background(), reqs[i], body); err != nil {
					b.Fatal(err)
				}
				profile += time.Since(t0)
				b.StopTimer() // reads memory stats: keep it out of both timings
				t1 := time.Now()
				if err := s.Algorithm().Verify(key.Public(), base, rawSig); err != nil {
					b.Fatal(err)
				}
				raw += time.Since(t1)
				b.StartTimer()
			}
			b.ReportMetric(float64(profile)/float64(raw), "x-raw")
		})
	}
}

// rawBase returns a signature base like the one SignRequest signs with s, and the key to sign it with.
func rawBase(b *testing.B, s *Signer, key crypto.Signer) (Algorithm, crypto.Signer, []byte) {
	r := benchRequest(b)
	if err := s.SignRequest(r, []byte(benchBody)); err != nil {
		b.Fatal(err)
	}
	ins, err := ParseSignatureInput(r.Header.Values(wire.HeaderSignatureInput))
	if err != nil {
		b.Fatal(err)
	}
	base, err := SignatureBase(Message{Request: r}, &ins[0])
	if err != nil {
		b.Fatal(err)
	}
	return s.Algorithm(), key, base
}

func BenchmarkRawSign(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			s, key, _ := newEnv(b).workload(b, alg, SignerOptions{})
			a, key, base := rawBase(b, s, key)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := a.Sign(key, base); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			s, key, _ := newEnv(b).workload(b, alg, SignerOptions{})
			a, key, base := rawBase(b, s, key)
			sig, err := a.Sign(key, base)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := a.Verify(key.Public(), base, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSignedResponse is the signed-response path (wimse-sign-response): the server signing its response, and
// the client verifying it against the request it sent. The signatures are those of a request; what differs is the
// `req` components and the request's own Signature-Input read back, so allocation is the figure to watch here.
func BenchmarkSignedResponse(b *testing.B) {
	for _, alg := range benchAlgs {
		e := newEnv(b)
		client, _, _ := e.workload(b, alg, SignerOptions{RequestSignedResponse: true})
		server, _, _ := e.workload(b, alg, SignerOptions{})
		v := e.verifier(b, nil)
		body := []byte(benchBody)
		responses := func(n int, signed bool) []*http.Response {
			out := make([]*http.Response, n)
			for i := range out {
				r := benchRequest(b)
				if err := client.SignRequest(r, body); err != nil {
					b.Fatal(err)
				}
				out[i] = &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Request: r}
				if err := server.SignResponse(out[i], body); signed && err != nil {
					b.Fatal(err)
				}
				if !signed {
					out[i].Header = http.Header{"Content-Type": {"application/json"}}
				}
			}
			return out
		}
		if _, err := v.VerifyResponse(context.Background(), responses(1, true)[0], body); err != nil { // warm the WIT cache
			b.Fatal(err)
		}
		b.Run(alg+"/sign", func(b *testing.B) {
			resps := responses(b.N, false)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := server.SignResponse(resps[i], body); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/verify", func(b *testing.B) {
			resps := responses(b.N, true)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := v.VerifyResponse(context.Background(), resps[i], body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
