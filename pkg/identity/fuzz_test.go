package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func FuzzParseBundle(f *testing.F) {
	f.Add([]byte(`{"keys":[{"use":"jwt-svid","kid":"k","kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	td := spiffeid.RequireTrustDomainFromString("example.org")
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseBundle(td, data)
	})
}

func FuzzParseWIT(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6IndpdCtqd3QiLCJraWQiOiJrIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.AA")
	f.Add("a.b.c")
	// A WIMSE WIT: an Ed25519 workload key (cnf.jwk.alg EdDSA), parsed without go-spiffe's witsvid.
	f.Add("eyJhbGciOiJFUzI1NiIsInR5cCI6IndpdCtqd3QiLCJraWQiOiJrIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIiwiZXhwIjo0MTAyNDQ0ODAwLCJjbmYiOnsiandrIjp7Imt0eSI6Ik9LUCIsImNydiI6IkVkMjU1MTkiLCJ4IjoiWmpsVlQ0Q09zQ2tRTzlISW82dERXQVhheVEwTXltb0ZVS0pSSVE3UzhSOCIsImFsZyI6IkVkRFNBIn19fQ.AA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, token string) {
		_, _ = parseWIT(token, key, now)
	})
}

func FuzzParseKeyPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parseKeyPEM(data)
	})
}
