package httpsig

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

const vectorDir = "testdata/rfc9421"

// The RFC 9421 Appendix B.2 test-request, as it arrives at a server.
const testRequest = "POST /foo?param=Value&Pet=dog HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:55 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:\r\n" +
	"Content-Length: 18\r\n" +
	"\r\n" +
	`{"hello": "world"}`

// The B.2 test-response, with the Content-Digest its body actually has (see testdata/README.md).
const testResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:56 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Digest: sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:\r\n" +
	"Content-Length: 23\r\n" +
	"\r\n" +
	`{"message": "good dog"}`

// The Section 2.4 response to test-request.
const reqresResponse = "HTTP/1.1 503 Service Unavailable\r\n" +
	"Date: Tue, 20 Apr 2021 02:07:56 GMT\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 62\r\n" +
	"Content-Digest: sha-512=:0Y6iCBzGg5rZtoXS95Ijz03mslf6KAMCloESHObfwnHJDbkkWWQz6PhhU9kxsTbARtY2PTBOzq24uJFpHsMuAg==:\r\n" +
	"\r\n" +
	`{"busy": true, "message": "Your call is very important to us"}`

func readRequest(t testing.TB, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func readResponse(t testing.TB, raw string, req *http.Request) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// testKey loads an Appendix B.1 key from its JWK and checks it against the PEM public key printed beside it.
func testKey(t testing.TB, kid string) *jose.JSONWebKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, kid+".jwk.json"))
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(data); err != nil || k.KeyID != kid || k.IsPublic() {
		t.Fatalf("%s: %v", kid, err)
	}
	pemData, err := os.ReadFile(filepath.Join(vectorDir, kid+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemData)
	var pub crypto.PublicKey
	switch blk.Type {
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	}
	if err != nil || pub == nil {
		t.Fatalf("%s: public PEM %q: %v", kid, blk.Type, err)
	}
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public().Key) {
		t.Fatalf("%s: JWK and PEM public keys differ", kid)
	}
	return &k
}

type vector struct {
	SignatureInput string `json:"signature_input"`
	Signature      string `json:"signature"`
	ClientCert     string `json:"client_cert"`
}

func loadVectors(t testing.TB) map[string]vector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(vectorDir, "signatures.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]vector
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRFC9421Vectors(t *testing.T) {
	vectors := loadVectors(t)
	keys := map[string]*jose.JSONWebKey{}
	for _, kid := range []string{"test-key-rsa", "test-key-rsa-pss", "test-key-ecc-p256", "test-key-ed25519"} {
		keys[kid] = testKey(t, kid)
	}
	ttrp := readRequest(t, strings.Replace(testRequest, "Host: example.com", "Host: service.internal.example", 1))
	ttrp.Header.Set("Client-Cert", vectors["ttrp"].ClientCert)
	tests := []struct {
		name string
		msg  func() Message
		alg  Algorithm // "" for HMAC: base only
	}{
		{"b21", func() Message { return Message{Request: readRequest(t, testRequest)} }, AlgRSAPSSSHA512},
		{"b22", func() Message { return Message{Request: readRequest(t, testRequest)} }, AlgRSAPSSSHA512},
		{"b23", func() Message { return Message{Request: readRequest(t, testRequest)} }, AlgRSAPSSSHA512},
		{"b24", func() Message { return Message{Response: readResponse(t, testResponse, nil)} }, AlgECDSAP256SHA256},
		{"b25", func() Message { return Message{Request: readRequest(t, testRequest)} }, ""},
		{"b26", func() Message { return Message{Request: readRequest(t, testRequest)} }, AlgEd25519},
		{"reqres", func() Message {
			req := readRequest(t, testRequest)
			return Message{Request: req, Response: readResponse(t, reqresResponse, req)}
		}, AlgECDSAP256SHA256},
		{"sig1-rsa-pss", func() Message { return Message{Request: readRequest(t, testRequest)} }, AlgRSAPSSSHA512},
		{"ttrp", func() Message { return Message{Request: ttrp} }, AlgECDSAP256SHA256},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := vectors[tt.name]
			inputs, err := ParseSignatureInput([]string{v.SignatureInput})
			if err != nil || len(inputs) != 1 {
				t.Fatalf("ParseSignatureInput: %v", err)
			}
			if got := inputs[0].Label + "=" + inputs[0].String(); got != v.SignatureInput {
				t.Errorf("re-serialized Signature-Input = %q, want %q", got, v.SignatureInput)
			}
			want, err := os.ReadFile(filepath.Join(vectorDir, tt.name+".base"))
			if err != nil {
				want, err = os.ReadFile(filepath.Join(vectorDir, "sig1-rsa-pss.base"))
			}
			if err != nil {
				t.Fatal(err)
			}
			m := tt.msg()
			base, err := SignatureBase(m, &inputs[0])
			if err != nil {
				t.Fatalf("SignatureBase: %v", err)
			}
			if !bytes.Equal(base, want) {
				t.Fatalf("signature base differs\n got: %q\nwant: %q", base, want)
			}
			if tt.alg == "" {
				return
			}
			kid, _ := inputs[0].StringParam("keyid")
			key := keys[kid]
			m.header().Set(wire.HeaderSignatureInput, v.SignatureInput)
			m.header().Set(wire.HeaderSignature, v.Signature)
			got, err := Verify(m, inputs[0].Label, tt.alg, key.Public().Key)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !reflect.DeepEqual(got.Components, inputs[0].Components) {
				t.Errorf("Verify returned %v", got.Components)
			}
			// Tamper with the signature: it must fail as a bad signature.
			sigs, _ := ParseSignature([]string{v.Signature})
			sig := sigs[inputs[0].Label]
			sig[len(sig)/2] ^= 1
			m.header().Set(wire.HeaderSignature, inputs[0].Label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
			if _, err := Verify(m, inputs[0].Label, tt.alg, key.Public().Key); !errors.Is(err, autherr.ErrBadSignature) {
				t.Fatalf("Verify(tampered) = %v, want autherr.ErrBadSignature", err)
			}
			// Sign the same input afresh and verify it.
			m.header().Del(wire.HeaderSignatureInput)
			m.header().Del(wire.HeaderSignature)
			if err := Sign(m, &inputs[0], tt.alg, key.Key.(crypto.Signer)); err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if m.header().Get(wire.HeaderSignatureInput) != v.SignatureInput {
				t.Errorf("Sign wrote Signature-Input %q", m.header().Get(wire.HeaderSignatureInput))
			}
			if _, err := Verify(m, inputs[0].Label, tt.alg, key.Public().Key); err != nil {
				t.Fatalf("Verify(own signature): %v", err)
			}
			if tt.alg == AlgEd25519 && m.header().Get(wire.HeaderSignature) != v.Signature {
				t.Errorf("Ed25519 is deterministic: got %q, want %q", m.header().Get(wire.HeaderSignature), v.Signature)
			}
		})
	}
}

func TestRFC9421TestKeysSignVerify(t *testing.T) {
	tests := []struct {
		kid string
		alg Algorithm
	}{
		{"test-key-rsa", AlgRSAV15SHA256},
		{"test-key-rsa", "RS384"},
		{"test-key-rsa-pss", AlgRSAPSSSHA512},
		{"test-key-rsa-pss", "PS256"},
		{"test-key-ecc-p256", AlgECDSAP256SHA256},
		{"test-key-ed25519", AlgEd25519},
	}
	base := []byte(`"@signature-params": ();created=1618884473`)
	for _, tt := range tests {
		k := testKey(t, tt.kid)
		sig, err := tt.alg.Sign(k.Key.(crypto.Signer), base)
		if err != nil {
			t.Fatalf("%s %s: Sign: %v", tt.kid, tt.alg, err)
		}
		if err := tt.alg.Verify(k.Public().Key, base, sig); err != nil {
			t.Fatalf("%s %s: Verify: %v", tt.kid, tt.alg, err)
		}
	}
}
