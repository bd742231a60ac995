// Command speedprobe times the benchmark's crypto floor on the CPU it runs on: ECDSA P-256 signatures and
// verifications over SHA-256 of a 330-byte input (the size of a WPT's signing input), ASN.1 form, so no JWS or
// structured-field encoding; and Ed25519 signatures and verifications of the same input, the floor of the rows
// whose workload keys are Ed25519. The pair benchmark runs it with taskset on the proxies' core before and after
// every measurement: it is both the floor the proof modes are measured in and a gauge of how fast that core is just
// then (by the P-256 verification). It prints one line, "sign <ns> verify <ns> ed25519-sign <ns> ed25519-verify
// <ns>", each the median of -batches batches of -n operations.
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"
)

func main() {
	n := flag.Int("n", 100, "operations per batch")
	batches := flag.Int("batches", 5, "batches; each figure is the median")
	flag.Parse()
	if *n < 1 || *batches < 1 {
		fmt.Fprintln(os.Stderr, "speedprobe: -n and -batches must be positive")
		os.Exit(2)
	}
	sign, verify, err := probe(*n, *batches)
	if err != nil {
		fmt.Fprintln(os.Stderr, "speedprobe:", err)
		os.Exit(1)
	}
	edSign, edVerify, err := probeEd25519(*n, *batches)
	if err != nil {
		fmt.Fprintln(os.Stderr, "speedprobe:", err)
		os.Exit(1)
	}
	fmt.Printf("sign %d verify %d ed25519-sign %d ed25519-verify %d\n", sign.Nanoseconds(), verify.Nanoseconds(),
		edSign.Nanoseconds(), edVerify.Nanoseconds())
}

// probeEd25519 is probe for Ed25519 (which hashes internally, with SHA-512): what an EdDSA WPT or HTTP signature
// cannot avoid.
func probeEd25519(n, batches int) (sign, verify time.Duration, err error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return 0, 0, err
	}
	input := make([]byte, 330)
	if _, err := rand.Read(input); err != nil {
		return 0, 0, err
	}
	sig := ed25519.Sign(key, input)
	var signs, verifies []time.Duration
	for range batches {
		t0 := time.Now()
		for range n {
			_ = ed25519.Sign(key, input)
		}
		signs = append(signs, time.Since(t0)/time.Duration(n))
		t0 = time.Now()
		for range n {
			if !ed25519.Verify(pub, input, sig) {
				return 0, 0, fmt.Errorf("ed25519 verification failed")
			}
		}
		verifies = append(verifies, time.Since(t0)/time.Duration(n))
	}
	slices.Sort(signs)
	slices.Sort(verifies)
	return signs[len(signs)/2], verifies[len(verifies)/2], nil
}

func probe(n, batches int) (sign, verify time.Duration, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return 0, 0, err
	}
	input := make([]byte, 330)
	if _, err := rand.Read(input); err != nil {
		return 0, 0, err
	}
	h := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
	if err != nil {
		return 0, 0, err
	}
	var signs, verifies []time.Duration
	for range batches {
		t0 := time.Now()
		for range n {
			h := sha256.Sum256(input)
			if _, err := ecdsa.SignASN1(rand.Reader, key, h[:]); err != nil {
				return 0, 0, err
			}
		}
		signs = append(signs, time.Since(t0)/time.Duration(n))
		t0 = time.Now()
		for range n {
			h := sha256.Sum256(input)
			if !ecdsa.VerifyASN1(&key.PublicKey, h[:], sig) {
				return 0, 0, fmt.Errorf("verification failed")
			}
		}
		verifies = append(verifies, time.Since(t0)/time.Duration(n))
	}
	slices.Sort(signs)
	slices.Sort(verifies)
	return signs[len(signs)/2], verifies[len(verifies)/2], nil
}
