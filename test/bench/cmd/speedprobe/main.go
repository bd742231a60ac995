// Command speedprobe times the benchmark's crypto floor on the CPU it runs on: ECDSA P-256 signatures and
// verifications over SHA-256 of a 330-byte input (the size of a WPT's signing input), ASN.1 form, so no JWS or
// structured-field encoding. The pair benchmark runs it with taskset on the proxies' core before and after every
// measurement: it is both the floor the proof modes are measured in and a gauge of how fast that core is just then.
// It prints one line, "sign <ns> verify <ns>", each the median of -batches batches of -n operations.
package main

import (
	"crypto/ecdsa"
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
	fmt.Printf("sign %d verify %d\n", sign.Nanoseconds(), verify.Nanoseconds())
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
