package jose

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParseKeySet: a JWK Set from an issuer's or transmitter's URL never panics the parser, and what it keeps is
// a bounded list of public, valid, asymmetric signature keys.
func FuzzParseKeySet(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	pub, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "a", Algorithm: "ES256"}}})
	f.Add(pub)
	priv, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "p", Algorithm: "ES256"}}})
	f.Add(priv)
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"hs"},{"kty":"EC","crv":"P-256","x":"bad","y":"bad"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"XYZ","d":"AA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		set, err := ParseKeySet(data)
		if err != nil {
			if set != nil {
				t.Fatal("a set with an error")
			}
			return
		}
		if len(set.Keys) == 0 || len(set.Keys) > MaxKeySetKeys {
			t.Fatalf("%d keys", len(set.Keys))
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || !k.Valid() || !Asymmetric(k.Key) || (k.Use != "" && k.Use != "sig") ||
				(k.Algorithm != "" && !Supported(k.Algorithm)) {
				t.Fatalf("kept %s %q (use %q, alg %q)", KeyDescription(k.Key), k.KeyID, k.Use, k.Algorithm)
			}
		}
	})
}
