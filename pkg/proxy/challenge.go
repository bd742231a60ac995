package proxy

import (
	"strings"

	"github.com/agentauth/agentauth/pkg/wire"
)

// Authentication schemes named in the WWW-Authenticate challenge of a 401 (RFC 9110 §11.6.1 requires one). The
// WIMSE drafts define no HTTP authentication scheme, so these name the proofs the route accepts: a WIT with a
// WPT, a WIT with an HTTP message signature, a client X.509-SVID.
const (
	SchemeWPT     = "WIMSE-WPT"
	SchemeHTTPSig = "WIMSE-HTTPSig"
	SchemeMTLS    = "WIMSE-mTLS"
)

// challenge is the WWW-Authenticate value of a 401 on route rt (nil when no route matched): one challenge per
// accepted proof, in the order mtls, wpt, httpsig, each with the route as realm.
func challenge(rt *Route) string {
	modes := wire.ModeMTLS | wire.ModeWPT | wire.ModeHTTPSig
	realm := ""
	if rt != nil {
		if rt.Modes&modes != 0 {
			modes = rt.Modes
		}
		realm = ` realm="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(rt.Name) + `"`
	}
	var cs []string
	for _, m := range []struct {
		mode   wire.Mode
		scheme string
	}{{wire.ModeMTLS, SchemeMTLS}, {wire.ModeWPT, SchemeWPT}, {wire.ModeHTTPSig, SchemeHTTPSig}} {
		if modes.Has(m.mode) {
			cs = append(cs, m.scheme+realm)
		}
	}
	return strings.Join(cs, ", ")
}
