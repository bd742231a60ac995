package issuerclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/issuer/issuerclient"
)

// A sidecar's first credentials: attest with a join token, then check what the issuer returned before using it.
func Example() {
	var issuerTLS *tls.Config // trusts the controller's bundle and authorizes wire.IssuerID(td)
	cc, _ := grpc.NewClient("127.0.0.1:8443", grpc.WithTransportCredentials(credentials.NewTLS(issuerTLS)))
	defer cc.Close()

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	creds, err := issuerclient.NewClient(cc).Attest(context.Background(),
		&agentauthv1.AttestRequest{JoinToken: "…", Csr: csr})
	if errors.Is(err, autherr.ErrReplay) {
		return // the token was spent: ask the operator for another
	}
	issued, err := issuerclient.VerifyCredentials(creds, key.Public(), nil, time.Now())
	if err == nil {
		_ = issued.ID // the SPIFFE ID the SVID names; issued.Chain and issued.X509Bundle go to the TLS config
	}
}
