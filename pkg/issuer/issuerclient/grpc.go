package issuerclient

import (
	"context"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Client calls the issuer service over a gRPC connection. It wraps the generated IssuerServiceClient
// (api/agentauth/v1/issuer_grpc.pb.go) to return the credentials and to map refusals back to autherr reasons.
type Client struct {
	rpc agentauthv1.IssuerServiceClient
}

// NewClient returns a Client on cc: a TLS connection that authenticates the issuer (Attest), an mTLS one with
// the workload's SVID (Renew), or a local-credentials connection to the issuer's Unix socket (Attest).
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{rpc: agentauthv1.NewIssuerServiceClient(cc)}
}

// Attest exchanges attestation evidence for first credentials. Refusals wrap their autherr reason
// (errors.Is(err, autherr.ErrReplay), …).
func (c *Client) Attest(ctx context.Context, req *agentauthv1.AttestRequest, opts ...grpc.CallOption) (*agentauthv1.Credentials, error) {
	out, err := c.rpc.Attest(ctx, req, opts...)
	if err != nil {
		return nil, fromStatus("Attest", err)
	}
	if out.GetCredentials() == nil {
		return nil, fmt.Errorf("issuer: %w: Attest answered without credentials", autherr.ErrMalformed)
	}
	return out.GetCredentials(), nil
}

// Renew exchanges the current SVID (presented in the mTLS handshake) for fresh credentials.
func (c *Client) Renew(ctx context.Context, req *agentauthv1.RenewRequest, opts ...grpc.CallOption) (*agentauthv1.Credentials, error) {
	out, err := c.rpc.Renew(ctx, req, opts...)
	if err != nil {
		return nil, fromStatus("Renew", err)
	}
	if out.GetCredentials() == nil {
		return nil, fmt.Errorf("issuer: %w: Renew answered without credentials", autherr.ErrMalformed)
	}
	return out.GetCredentials(), nil
}

// reasons are the refusals the service sends, by reason code.
var reasons = func() map[string]error {
	m := map[string]error{}
	for _, r := range []*autherr.Reason{autherr.ErrMissing, autherr.ErrMalformed, autherr.ErrBadSignature, autherr.ErrExpired, autherr.ErrReplay,
		autherr.ErrUntrustedIssuer, autherr.ErrUnsupportedAlg, autherr.ErrTooLarge, autherr.ErrDenied, autherr.ErrRevoked, autherr.ErrRateLimited} {
		m[r.Code()] = r
	}
	return m
}()

// fromStatus turns a gRPC error back into an error wrapping the autherr reason the server sent, keeping the
// *status.Status reachable through errors.As for the code.
func fromStatus(method string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("issuer: %s: %w", method, err)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == wire.ErrorDomain {
			if r, known := reasons[ei.GetReason()]; known {
				return fmt.Errorf("issuer: %s refused: %w: %w", method, r, err)
			}
		}
	}
	return fmt.Errorf("issuer: %s: %w", method, err)
}
