package revocation

import (
	"testing"
	"time"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
)

// FuzzNormal: subject values come from security events and tokens. Normal never panics, is idempotent, and an
// index finds a revocation by any spelling that normalises like the one it was made with.
func FuzzNormal(f *testing.F) {
	for _, s := range []string{"Erin@Example.COM", "0A:1B 2c", "00", "", "@", "a@b@C", "spiffe://x/y"} {
		f.Add(s)
	}
	kinds := []Kind{KindUserEmail, KindX509Serial, KindSPIFFE, KindUserIssSub}
	f.Fuzz(func(t *testing.T, value string) {
		now := time.Now()
		for _, k := range kinds {
			n := Normal(k, value)
			if Normal(k, n) != n {
				t.Fatalf("Normal(%s) is not idempotent on %q: %q, then %q", k, value, n, Normal(k, n))
			}
			x := NewIndex(&agentauthv1.Revocation{Id: "r", Subject: &agentauthv1.Subject{Kind: string(k), Value: value}})
			if x.Refusing(k, "", n, now, now) == nil {
				t.Fatalf("%s %q: not found by its normal form %q", k, value, n)
			}
		}
		if d := NormalDelegated(value); NormalDelegated(d) != d {
			t.Fatalf("NormalDelegated is not idempotent on %q", value)
		}
	})
}
