//go:build !linux

package proxy

import (
	"errors"
	"net"
	"net/netip"
)

var errNoTransparent = errors.New("proxy: transparent interception needs Linux (netfilter SO_ORIGINAL_DST)")

func transparentSupported() error { return errNoTransparent }

func originalDst(*net.TCPConn) (netip.AddrPort, error) { return netip.AddrPort{}, errNoTransparent }
