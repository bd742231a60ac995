package issuer

import (
	"context"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/agentauth/agentauth/internal/peercred"
)

// PeerCredInfo is the gRPC AuthInfo of a connection on a local Unix socket: the kernel's record (SO_PEERCRED)
// of the process that connected, taken when it called connect(2).
type PeerCredInfo struct {
	credentials.CommonAuthInfo
	PID      int32
	UID, GID uint32
}

// AuthType implements credentials.AuthInfo.
func (PeerCredInfo) AuthType() string { return "unix-peercred" }

// PeerCredentials returns server transport credentials for a Unix socket listener that record each client's
// peer credentials as a PeerCredInfo and refuse connections that are not on a Unix socket. Clients connect with
// grpc's local credentials (google.golang.org/grpc/credentials/local).
func PeerCredentials() credentials.TransportCredentials { return peerCreds{} }

type peerCreds struct{}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("issuer: peer credentials are server-side only; clients use local credentials")
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := peercred.Read(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: %w", err)
	}
	return conn, PeerCredInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PID:            cred.PID, UID: cred.UID, GID: cred.GID,
	}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "local"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }
