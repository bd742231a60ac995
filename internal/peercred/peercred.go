// Package peercred reads the kernel's record of the process at the other end of a Unix socket (SO_PEERCRED): the
// pid, uid and gid it had when it called connect(2), which no process can forge.
package peercred

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Cred is a peer's credentials.
type Cred struct {
	PID      int32
	UID, GID uint32
}

// Read returns the peer credentials of c, a Unix socket connection or a wrapper of one (NetConn).
func Read(c net.Conn) (Cred, error) {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("peer credentials need a Unix socket, got a %T", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
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
		return Cred{}, fmt.Errorf("reading SO_PEERCRED: %w", err)
	}
	return Cred{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}
