package autherrtest

import (
	"errors"
	"fmt"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// recorder is a testing.TB whose Fatalf only records, so Check's verdicts can be checked.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestCheck(t *testing.T) {
	replay := fmt.Errorf("wpt: %w: jti seen before", autherr.ErrReplay)
	for _, tc := range []struct {
		name      string
		err, want error
		fails     bool
	}{
		{"nil wanted and got", nil, nil, false},
		{"error where none wanted", replay, nil, true},
		{"the wanted sentinel", replay, autherr.ErrReplay, false},
		{"another sentinel", replay, autherr.ErrExpired, true},
		{"no error where one wanted", nil, autherr.ErrReplay, true},
		{"two sentinels", fmt.Errorf("%w and %w", autherr.ErrReplay, autherr.ErrExpired), autherr.ErrReplay, true},
		{"a non-sentinel wanted and wrapped alone", fmt.Errorf("x: %w", errors.ErrUnsupported), errors.ErrUnsupported, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, tc.err, tc.want)
			if r.failed != tc.fails {
				t.Fatalf("Check(%v, %v) failed = %t, want %t", tc.err, tc.want, r.failed, tc.fails)
			}
		})
	}
}
