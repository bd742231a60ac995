package proxy

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func sockaddr4(family uint16, ap netip.AddrPort) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b[0:2], family)
	binary.BigEndian.PutUint16(b[2:4], ap.Port())
	a := ap.Addr().As4()
	copy(b[4:8], a[:])
	return b
}

func sockaddr6(family uint16, ap netip.AddrPort, scope uint32) []byte {
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b[0:2], family)
	binary.BigEndian.PutUint16(b[2:4], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:24], a[:])
	binary.NativeEndian.PutUint32(b[24:28], scope)
	return b
}

func TestDecodeSockaddr(t *testing.T) {
	v4 := netip.MustParseAddrPort("10.96.0.10:8080")
	if got, err := decodeSockaddrInet4(sockaddr4(afInet, v4)); err != nil || got != v4 {
		t.Errorf("inet4: %v %v", got, err)
	}
	v6 := netip.MustParseAddrPort("[fd00::1]:443")
	if got, err := decodeSockaddrInet6(sockaddr6(afInet6, v6, 0)); err != nil || got != v6 {
		t.Errorf("inet6: %v %v", got, err)
	}
	ll := netip.MustParseAddrPort("[fe80::1]:80")
	if got, err := decodeSockaddrInet6(sockaddr6(afInet6, ll, 3)); err != nil || got.Addr().Zone() != "3" || got.Port() != 80 {
		t.Errorf("link-local: %v %v", got, err)
	}
	for name, b := range map[string][]byte{
		"v4 short":        make([]byte, 7),
		"v4 wrong family": sockaddr4(afInet6, v4),
	} {
		if _, err := decodeSockaddrInet4(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	for name, b := range map[string][]byte{
		"v6 short":        make([]byte, 27),
		"v6 wrong family": sockaddr6(afInet, v6, 0),
	} {
		if _, err := decodeSockaddrInet6(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
