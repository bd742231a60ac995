package issuer

import (
	"crypto/x509"
	"testing"
)

func FuzzParseWITKey(f *testing.F) {
	k := newP256(f)
	f.Add(spkiOf(f, k.Public()), "ES256")
	f.Add(publicJWK(f, k, "ES256"), "ES256")
	f.Add(privateJWK(f, k), "ES256")
	f.Add([]byte(`{"kty":"oct","k":"AAAA"}`), "HS256")
	f.Add([]byte(`{"kty":"EC","crv":"P-256","x":"","y":""}`), "ES256")
	f.Fuzz(func(t *testing.T, data []byte, alg string) {
		pub, err := ParseWITKey(data, alg)
		if err == nil && checkWITAlg(alg, pub) != nil {
			t.Fatalf("accepted a key that does not fit %q", alg)
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	f.Add(csrFor(f, newP256(f)))
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		pub, err := ParseCSR(der)
		if err != nil {
			return
		}
		csr, perr := x509.ParseCertificateRequest(der)
		if perr != nil || csr.CheckSignature() != nil || !publicKeyEqual(csr.PublicKey, pub) {
			t.Fatal("accepted a CSR that does not parse or whose signature does not verify")
		}
	})
}
