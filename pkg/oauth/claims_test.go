package oauth

import (
	"testing"
)

// Claims a token carries beyond the ones named in the structs (a user's email and groups, a Txn-Token's custom
// claims, an actor's extra members) are kept at the top level, where policies read them: go-json-experiment
// takes them into the ",embed" map only.
func TestUnknownClaimsAreKept(t *testing.T) {
	var u userClaims
	if err := decodeClaims("user", []byte(`{"iss":"i","sub":"alice","email":"alice@example.com","groups":["ops"]}`), &u); err != nil {
		t.Fatal(err)
	}
	if m := u.all(nil); m["email"] != "alice@example.com" || m["groups"] == nil || m["sub"] != "alice" {
		t.Errorf("user claims %v", m)
	}
	var x txnClaims
	if err := decodeClaims("txn", []byte(`{"iss":"i","txn":"t","tenant":"acme","act":{"sub":"a","team":"x"}}`), &x); err != nil {
		t.Fatal(err)
	}
	if m := x.all(nil); m["tenant"] != "acme" || m["txn"] != "t" {
		t.Errorf("Txn-Token claims %v", m)
	}
	if x.Act == nil || x.Act.asMap()["team"] != "x" {
		t.Errorf("act %+v", x.Act)
	}
}
