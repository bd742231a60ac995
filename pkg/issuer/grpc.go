package issuer

import (
	"context"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// The gRPC plumbing of agentauth.v1.IssuerService. api/generate.sh generates only the messages (no
// protoc-gen-go-grpc), so the service descriptor and client are written here; they follow the generated shape.
const (
	serviceName  = "agentauth.v1.IssuerService"
	methodAttest = "/" + serviceName + "/Attest"
	methodRenew  = "/" + serviceName + "/Renew"
)

type issuerServer interface {
	Attest(context.Context, *agentauthv1.AttestRequest) (*agentauthv1.AttestResponse, error)
	Renew(context.Context, *agentauthv1.RenewRequest) (*agentauthv1.RenewResponse, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*issuerServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Attest", Handler: unaryHandler(methodAttest, issuerServer.Attest)},
		{MethodName: "Renew", Handler: unaryHandler(methodRenew, issuerServer.Renew)},
	},
	Metadata: "agentauth/v1/issuer.proto",
}

func unaryHandler[Req any, Resp any](method string, call func(issuerServer, context.Context, *Req) (*Resp, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(Req)
		if err := dec(in); err != nil {
			return nil, err
		}
		if interceptor == nil {
			return call(srv.(issuerServer), ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return call(srv.(issuerServer), ctx, req.(*Req))
		})
	}
}

// Client calls the issuer service over a gRPC connection.
type Client struct{ cc grpc.ClientConnInterface }

// NewClient returns a Client on cc: a TLS connection that authenticates the issuer (Attest), an mTLS one with
// the workload's SVID (Renew), or a local-credentials connection to the issuer's Unix socket (Attest).
func NewClient(cc grpc.ClientConnInterface) *Client { return &Client{cc: cc} }

// Attest exchanges attestation evidence for first credentials. Refusals wrap their autherr reason
// (errors.Is(err, issuer.ErrReplay), …).
func (c *Client) Attest(ctx context.Context, req *agentauthv1.AttestRequest, opts ...grpc.CallOption) (*agentauthv1.Credentials, error) {
	out := new(agentauthv1.AttestResponse)
	if err := c.cc.Invoke(ctx, methodAttest, req, out, opts...); err != nil {
		return nil, fromStatus("Attest", err)
	}
	if out.GetCredentials() == nil {
		return nil, fmt.Errorf("issuer: %w: Attest answered without credentials", ErrMalformed)
	}
	return out.GetCredentials(), nil
}

// Renew exchanges the current SVID (presented in the mTLS handshake) for fresh credentials.
func (c *Client) Renew(ctx context.Context, req *agentauthv1.RenewRequest, opts ...grpc.CallOption) (*agentauthv1.Credentials, error) {
	out := new(agentauthv1.RenewResponse)
	if err := c.cc.Invoke(ctx, methodRenew, req, out, opts...); err != nil {
		return nil, fromStatus("Renew", err)
	}
	if out.GetCredentials() == nil {
		return nil, fmt.Errorf("issuer: %w: Renew answered without credentials", ErrMalformed)
	}
	return out.GetCredentials(), nil
}

// reasons are the refusals the service sends, by reason code.
var reasons = func() map[string]error {
	m := map[string]error{}
	for _, r := range []*autherr.Reason{ErrMissing, ErrMalformed, ErrBadSignature, ErrExpired, ErrReplay,
		ErrUntrustedIssuer, ErrUnsupportedAlg, ErrTooLarge, ErrDenied} {
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
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.GetDomain() == errorDomain {
			if r, known := reasons[ei.GetReason()]; known {
				return fmt.Errorf("issuer: %s refused: %w: %w", method, r, err)
			}
		}
	}
	return fmt.Errorf("issuer: %s: %w", method, err)
}
