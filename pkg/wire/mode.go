package wire

import (
	"fmt"
	"strings"
)

// Mode is a set of ways a route authenticates: bits combine with |, e.g. ModeMTLS|ModeWPT.
//
// On egress the modes say what the sidecar adds (a WIT+WPT, an HTTP signature, a client certificate); on ingress
// they say what it requires. ModePassthrough is exclusive: the request is forwarded with no proof added (egress) or
// required (ingress), and it must be configured explicitly — a route with no modes is invalid.
type Mode uint8

const (
	// ModeWPT: Workload-Identity-Token plus Workload-Proof-Token.
	ModeWPT Mode = 1 << iota
	// ModeHTTPSig: Workload-Identity-Token plus a WIMSE RFC 9421 HTTP message signature.
	ModeHTTPSig
	// ModeMTLS: mutual TLS with an X.509-SVID.
	ModeMTLS
	// ModePassthrough: no proof at all; only valid alone.
	ModePassthrough
)

// modeNames are the configuration names of the modes, in the order String lists them.
var modeNames = []struct {
	m    Mode
	name string
}{{ModeWPT, "wpt"}, {ModeHTTPSig, "httpsig"}, {ModeMTLS, "mtls"}, {ModePassthrough, "passthrough"}}

// Has reports whether every bit of x is in m.
func (m Mode) Has(x Mode) bool { return x != 0 && m&x == x }

// Proofs returns the application-layer proof modes in m (ModeWPT, ModeHTTPSig).
func (m Mode) Proofs() Mode { return m & (ModeWPT | ModeHTTPSig) }

// String lists the modes joined by "+", e.g. "wpt+mtls"; a single mode's String is its configuration name.
func (m Mode) String() string {
	if m == 0 {
		return "none"
	}
	var parts []string
	for _, n := range modeNames {
		if m.Has(n.m) {
			parts = append(parts, n.name)
		}
	}
	if rest := m &^ (ModeWPT | ModeHTTPSig | ModeMTLS | ModePassthrough); rest != 0 {
		parts = append(parts, fmt.Sprintf("0x%x", uint8(rest)))
	}
	return strings.Join(parts, "+")
}

// ParseMode returns the mode a configuration name ("wpt", "httpsig", "mtls", "passthrough") stands for, exactly
// as spelled there.
func ParseMode(name string) (Mode, error) {
	for _, n := range modeNames {
		if name == n.name {
			return n.m, nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (want wpt, httpsig, mtls or passthrough)", name)
}

// ParseModes turns names into a Mode set, as ParseMode does each one, after trimming spaces and ignoring case.
func ParseModes(names ...string) (Mode, error) {
	var m Mode
	for _, s := range names {
		found := false
		for _, n := range modeNames {
			if strings.EqualFold(strings.TrimSpace(s), n.name) {
				m |= n.m
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("wire: unknown mode %q (want wpt, httpsig, mtls or passthrough)", s)
		}
	}
	return m, nil
}
