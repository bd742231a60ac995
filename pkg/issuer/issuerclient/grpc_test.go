package issuerclient

import (
	"errors"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// TestFromStatus: a refusal comes back as its autherr reason only when the issuer's ErrorInfo domain names a
// reason it sends; the status stays reachable for the code.
func TestFromStatus(t *testing.T) {
	refusal := func(domain, reason string) error {
		st, err := status.New(codes.Unauthenticated, "refused").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	for _, tc := range []struct {
		name string
		err  error
		want *autherr.Reason
	}{
		{"reason in our domain", refusal(wire.ErrorDomain, autherr.ErrReplay.Code()), autherr.ErrReplay},
		{"another domain", refusal("example.org", autherr.ErrReplay.Code()), nil},
		{"unknown reason", refusal(wire.ErrorDomain, "no_such_reason"), nil},
		{"no detail", status.Error(codes.Unavailable, "down"), nil},
		{"not a status", errors.New("dial failed"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromStatus("Attest", tc.err)
			if r := autherr.Of(got); r != tc.want {
				t.Errorf("reason %v, want %v (%v)", r, tc.want, got)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("%v does not wrap %v", got, tc.err)
			}
		})
	}
}
