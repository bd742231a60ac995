//go:build linux

package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ip6tSoOriginalDst is IP6T_SO_ORIGINAL_DST from linux/netfilter_ipv6/ip6_tables.h (x/sys/unix lacks it).
const ip6tSoOriginalDst = 80

func transparentSupported() error { return nil }

// originalDst asks netfilter's conntrack where a REDIRECTed connection was going: getsockopt SO_ORIGINAL_DST on
// SOL_IP for IPv4 (also IPv4-mapped on a dual-stack socket), IP6T_SO_ORIGINAL_DST on SOL_IPV6 for IPv6. A
// connection that was not redirected has no conntrack NAT entry and fails (ENOENT).
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	remote, _ := c.RemoteAddr().(*net.TCPAddr)
	v6 := remote != nil && remote.IP.To4() == nil
	var (
		dst  netip.AddrPort
		serr error
	)
	err = raw.Control(func(fd uintptr) {
		if !v6 {
			// The kernel writes a 16-byte sockaddr_in; IPv6Mreq is the x/sys getter with a buffer that size.
			m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
			if err != nil {
				serr = err
				return
			}
			dst, serr = decodeSockaddrInet4(m.Multiaddr[:])
			return
		}
		// IPv6MTUInfo starts with a sockaddr_in6, which is what the kernel writes.
		mi, err := unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSoOriginalDst)
		if err != nil {
			serr = err
			return
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(&mi.Addr)), unsafe.Sizeof(mi.Addr))
		dst, serr = decodeSockaddrInet6(b)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", err)
	}
	return netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port()), nil
}
