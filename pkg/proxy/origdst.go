package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
)

type origDstKey struct{}

// WithOriginalDestination returns ctx carrying the destination a transparently intercepted connection was
// addressed to. The Server sets it for Transparent listeners; tests and custom front ends may set it themselves.
func WithOriginalDestination(ctx context.Context, dst netip.AddrPort) context.Context {
	return context.WithValue(ctx, origDstKey{}, dst)
}

// OriginalDestination returns the destination set by WithOriginalDestination.
func OriginalDestination(ctx context.Context) (netip.AddrPort, bool) {
	dst, ok := ctx.Value(origDstKey{}).(netip.AddrPort)
	return dst, ok && dst.IsValid()
}

// Linux address families, as found in the sockaddr the kernel returns for SO_ORIGINAL_DST.
const (
	afInet  = 2
	afInet6 = 10
)

// decodeSockaddrInet4 decodes a Linux struct sockaddr_in: family (host order), port (network order), address.
func decodeSockaddrInet4(b []byte) (netip.AddrPort, error) {
	if len(b) < 8 {
		return netip.AddrPort{}, fmt.Errorf("sockaddr_in: %d bytes", len(b))
	}
	if f := binary.NativeEndian.Uint16(b[0:2]); f != afInet {
		return netip.AddrPort{}, fmt.Errorf("sockaddr_in: family %d, want %d", f, afInet)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[2:4])), nil
}

// decodeSockaddrInet6 decodes a Linux struct sockaddr_in6: family, port, flow info, address, scope id.
func decodeSockaddrInet6(b []byte) (netip.AddrPort, error) {
	if len(b) < 28 {
		return netip.AddrPort{}, fmt.Errorf("sockaddr_in6: %d bytes", len(b))
	}
	if f := binary.NativeEndian.Uint16(b[0:2]); f != afInet6 {
		return netip.AddrPort{}, fmt.Errorf("sockaddr_in6: family %d, want %d", f, afInet6)
	}
	addr := netip.AddrFrom16([16]byte(b[8:24]))
	if scope := binary.NativeEndian.Uint32(b[24:28]); scope != 0 && addr.IsLinkLocalUnicast() {
		addr = addr.WithZone(fmt.Sprint(scope))
	}
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), nil
}
