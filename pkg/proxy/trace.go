package proxy

import (
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// W3C Trace Context (https://www.w3.org/TR/trace-context/) headers. Both sidecars forward them unchanged, so one
// task's calls carry one trace id across hops and their decision records line up.
const (
	HeaderTraceparent = "Traceparent"
	HeaderTracestate  = "Tracestate"
)

// traceparentLen is the length of a version 00 traceparent: 00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>.
const traceparentLen = 55

// Traceparent returns h's traceparent when it is one valid value, else "".
func Traceparent(h http.Header) string {
	vals := h.Values(HeaderTraceparent)
	if len(vals) != 1 || !validTraceparent(vals[0]) {
		return ""
	}
	return vals[0]
}

// validTraceparent checks the version-00 layout, which later versions extend only after a further '-'.
func validTraceparent(s string) bool {
	if len(s) < traceparentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	version, traceID, parentID, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	if !lowerHex(version) || version == "ff" || !lowerHex(traceID) || !lowerHex(parentID) || !lowerHex(flags) {
		return false
	}
	if allZero(traceID) || allZero(parentID) {
		return false
	}
	if version == "00" {
		return len(s) == traceparentLen
	}
	return len(s) == traceparentLen || s[traceparentLen] == '-'
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// ensureTraceparent returns the agent's traceparent, or starts a trace when it sent none that parses (and then
// drops its tracestate, which belonged to no valid trace). Trace ids need to be unique, not secret: math/rand.
// The sampled flag stays unset: the sidecar records no spans, and must not ask others to.
func ensureTraceparent(h http.Header) string {
	if tp := Traceparent(h); tp != "" {
		return tp
	}
	var b [24]byte
	for i := 0; i < len(b); i += 8 {
		v := rand.Uint64() | 1 // never all zeros
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	buf := make([]byte, 0, traceparentLen)
	buf = append(buf, "00-"...)
	buf = hex.AppendEncode(buf, b[:16])
	buf = append(buf, '-')
	buf = hex.AppendEncode(buf, b[16:])
	buf = append(buf, "-00"...)
	tp := string(buf)
	h[HeaderTraceparent] = []string{tp}
	delete(h, HeaderTracestate)
	return tp
}
