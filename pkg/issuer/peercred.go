package issuer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
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
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("issuer: peer credentials need a Unix socket, got a %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("issuer: reading SO_PEERCRED: %w", err)
	}
	return conn, PeerCredInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		PID:            cred.Pid, UID: cred.Uid, GID: cred.Gid,
	}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "local"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }
