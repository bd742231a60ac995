package k8sattest

import (
	"testing"
	"time"
)

// FuzzPrecheck: whatever a client presents, the check before the API server is asked returns, without panicking.
func FuzzPrecheck(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJhIn0.c2ln")
	f.Add("a.b.c")
	f.Add("")
	a := &Attestor{audience: "agentauth-controller", now: time.Now}
	f.Fuzz(func(t *testing.T, token string) {
		_ = a.precheck(token)
	})
}
