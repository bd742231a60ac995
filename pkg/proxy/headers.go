package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// identityHeaders (lower case) are ours: never accepted from outside, always set from verified state.
var identityHeaders = lower(wire.HeaderWorkloadID, wire.HeaderAuthMethod, wire.HeaderDelegatedSubject,
	wire.HeaderSubjectKind, wire.HeaderTransactionID, wire.HeaderXFCC)

// proofHeaders (lower case) are consumed by the ingress sidecar and not passed to the tool.
var proofHeaders = lower(wire.HeaderWIT, wire.HeaderWPT, wire.HeaderSignature, wire.HeaderSignatureInput)

// txnTokenLower is wire.HeaderTxnToken in lower case.
var txnTokenLower = strings.ToLower(wire.HeaderTxnToken)

// reservedPrefix is wire.ReservedHeaderPrefix in lower case.
var reservedPrefix = strings.ToLower(wire.ReservedHeaderPrefix)

func lower(names ...string) []string {
	for i, n := range names {
		names[i] = strings.ToLower(n)
	}
	return names
}

// reservedHeader reports whether the field name k starts with wire.ReservedHeaderPrefix, read as headerIs reads it.
func reservedHeader(k string) bool {
	prefix := reservedPrefix
	return len(k) >= len(prefix) && headerIs(k[:len(prefix)], prefix)
}

// headerIs reports whether the field name k is name (given in lower case) when compared case-insensitively with
// '_' read as '-', the way CGI-style servers and some frameworks read names: "x_agentauth_workload_id" must not
// reach a tool that would take it for X-Agentauth-Workload-Id.
func headerIs(k, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// stripHeaders deletes from h every field named one of names (lower case), whatever its case or spelling with
// underscores, and however often it repeats.
func stripHeaders(h http.Header, names []string) {
	for k := range h {
		if headerIn(k, names) {
			delete(h, k)
		}
	}
}

// headerIn reports whether the field name k is one of names (lower case), read as headerIs reads it.
func headerIn(k string, names []string) bool {
	for _, n := range names {
		if headerIs(k, n) {
			return true
		}
	}
	return false
}

// stripIdentity removes our identity headers (every one with ReservedHeaderPrefix) from the header and trailer of
// r, and any Txn-Token spelled with '_': only the Txn-Token header itself is verified, and a tool reading names the
// CGI way would take the other spelling for it.
func stripIdentity(r *http.Request) {
	for _, h := range []http.Header{r.Header, r.Trailer} {
		stripHeaders(h, identityHeaders)
		for k := range h {
			if reservedHeader(k) || (strings.IndexByte(k, '_') >= 0 && headerIs(k, txnTokenLower)) {
				delete(h, k)
			}
		}
	}
}

// methodOverrides (lower case) make many web frameworks run another method than the request line's, while
// policy decides on the request line's.
var methodOverrides = []string{"x-http-method-override", "x-http-method", "x-method-override"}

// checkMethodOverride refuses a request that asks the tool to run another method than the one policy sees.
func checkMethodOverride(h http.Header) error {
	for k := range h {
		if headerIn(k, methodOverrides) {
			return fmt.Errorf("%w: %s is not accepted: policy decides on the request's own method", autherr.ErrMalformed, k)
		}
	}
	return nil
}

// dropUpgradeExceptWebSocket removes an Upgrade other than WebSocket, and the HTTP2-Settings that goes with h2c.
// Ingress decides one request; after a 101 the connection is spliced and nothing on it is seen again. A
// WebSocket's messages belong to the upgrade request that was decided; an h2c upgrade would open a whole HTTP/2
// connection of requests nobody decided. Without the Upgrade the request is served as plain HTTP/1.1, which is
// what a client offering h2c falls back to.
func dropUpgradeExceptWebSocket(h http.Header) {
	if up := h.Values("Upgrade"); len(up) == 0 || (len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket")) {
		return
	}
	h.Del("Upgrade")
	h.Del("Http2-Settings")
}

// setIdentityHeaders sets the verified identity on the request to the tool. self is our own SPIFFE ID (XFCC By).
// A value that cannot be sent in a header is a malformed credential, not something to drop silently.
func setIdentityHeaders(h http.Header, id *Identity, peer *Peer, self string) error {
	set := func(k, v string) error {
		if v == "" {
			return nil
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("%w: verified %s %q cannot be sent as a header", autherr.ErrMalformed, k, v)
		}
		h.Set(k, v)
		return nil
	}
	if err := set(wire.HeaderWorkloadID, id.Subject); err != nil {
		return err
	}
	if err := set(wire.HeaderAuthMethod, string(id.Method)); err != nil {
		return err
	}
	if err := set(wire.HeaderDelegatedSubject, id.DelegatedSubject); err != nil {
		return err
	}
	if err := set(wire.HeaderSubjectKind, id.SubjectKind); err != nil {
		return err
	}
	if err := set(wire.HeaderTransactionID, id.TransactionID); err != nil {
		return err
	}
	if peer != nil {
		v := peer.xfcc
		if v == "" {
			v = xfcc(peer, self)
		}
		return set(wire.HeaderXFCC, v)
	}
	return nil
}

// xfcc renders one Envoy-style x-forwarded-client-cert element (SANITIZE_SET): By=<self>;Hash=<hex sha256 of the
// peer leaf DER>;URI=<peer SPIFFE ID>. It is "" when the peer sent no certificate.
func xfcc(peer *Peer, self string) string {
	if peer.TLS == nil || len(peer.TLS.PeerCertificates) == 0 {
		return ""
	}
	sum := sha256.Sum256(peer.TLS.PeerCertificates[0].Raw)
	var b strings.Builder
	if self != "" {
		b.WriteString("By=" + xfccValue(self) + ";")
	}
	b.WriteString("Hash=" + hex.EncodeToString(sum[:]))
	if !peer.ID.IsZero() {
		b.WriteString(";URI=" + xfccValue(peer.ID.String()))
	}
	return b.String()
}

// xfccValue quotes a value containing XFCC separators, escaping quotes and backslashes.
func xfccValue(v string) string {
	if !strings.ContainsAny(v, ",;=\"\\") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// checkHeaderSize refuses a request whose request line and header fields are over max bytes, counted as net/http
// counts MaxHeaderBytes: each field's name and value plus ": " and CRLF. The HTTP server reads up to twice max
// (see Server), so that oversized headers get the sidecar's JSON refusal rather than net/http's plain-text one.
func checkHeaderSize(r *http.Request, max int) error {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 + len("Host") + len(r.Host) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if n <= max {
		return nil
	}
	return &statusError{status: http.StatusRequestHeaderFieldsTooLarge,
		err: fmt.Errorf("%w: request headers of about %d bytes are over the %d-byte limit", autherr.ErrTooLarge, n, max)}
}
