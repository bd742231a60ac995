// Package autherrtest checks, in tests, that an error carries the reason it should. Every refusal wraps exactly
// one pkg/autherr sentinel: the reason becomes the JSON body, the metric label and the audit record, so an error
// that wrapped two would be ambiguous, and one that wrapped none would be reported as internal.
package autherrtest

import (
	"errors"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Check fails tb unless err is nil when want is nil, or else wraps want and no other sentinel.
func Check(tb testing.TB, err, want error) {
	tb.Helper()
	if want == nil {
		if err != nil {
			tb.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, want) {
		tb.Fatalf("error = %v, want %v", err, want)
		return
	}
	n := 0
	for _, r := range autherr.All() {
		if errors.Is(err, r) {
			n++
		}
	}
	if n != 1 {
		tb.Fatalf("error %v wraps %d sentinels, want exactly one", err, n)
	}
}
