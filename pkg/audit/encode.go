package audit

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"
	"unicode/utf8"
)

// The writer encodes a record on every request, so it does not go through encoding/json's reflection: appendBody
// writes the same bytes json.Marshal writes for a Record (same field order, omitempty, HTML-safe escaping, time
// as RFC 3339 with nanoseconds), which FuzzRecordEncoding checks. Index and Prev are left out: the writer puts them
// in front once the record's place in the log is known (see appendLine).

// appendBody appends the record's fields after Index and Prev, as a JSON object: {"time":...,...}.
func (r *Record) appendBody(b []byte) ([]byte, error) {
	if y := r.Time.Year(); y < 0 || y >= 10000 {
		return b, errors.New("audit: encoding record: time year outside of range [0,9999]")
	}
	b = append(b, `{"time":"`...)
	b = r.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":`...)
	b = appendString(b, string(r.Kind))
	b = appendField(b, "direction", r.Direction)
	b = appendField(b, "route", r.Route)
	b = appendField(b, "agent", r.Agent)
	b = appendField(b, "subject", r.Subject)
	b = appendField(b, "subjectKind", r.SubjectKind)
	b = appendField(b, "tool", r.Tool)
	b = appendField(b, "host", r.Host)
	b = appendField(b, "method", r.Method)
	b = appendField(b, "path", r.Path)
	b = appendField(b, "mcpMethod", r.MCPMethod)
	b = appendField(b, "mcpTool", r.MCPTool)
	b = appendField(b, "decision", r.Decision)
	b = appendField(b, "reason", r.Reason)
	if len(r.PolicyIDs) > 0 {
		b = append(b, `,"policyIds":[`...)
		for i, id := range r.PolicyIDs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, id)
		}
		b = append(b, ']')
	}
	b = appendField(b, "revocationId", r.RevocationID)
	b = appendField(b, "action", r.Action)
	b = appendField(b, "txn", r.Txn)
	b = appendField(b, "traceparent", r.Traceparent)
	b = appendField(b, "authMethod", r.AuthMethod)
	b = appendField(b, "attestation", r.Attestation)
	b = appendField(b, "risk", r.Risk)
	if r.Status != 0 {
		b = append(b, `,"status":`...)
		b = strconv.AppendInt(b, int64(r.Status), 10)
	}
	b = appendField(b, "cause", r.Cause)
	b = appendField(b, "setJti", r.SETJti)
	b = appendField(b, "actor", r.Actor)
	return append(b, '}'), nil
}

// appendLine appends a record's line: its index, prev (the leaf hash of the record before it, base64; omitted when
// nil), then body, the output of appendBody.
func appendLine(b []byte, index uint64, prev []byte, body []byte) []byte {
	b = append(b, `{"i":`...)
	b = strconv.AppendUint(b, index, 10)
	if prev != nil {
		b = append(b, `,"prev":"`...)
		b = base64.StdEncoding.AppendEncode(b, prev)
		b = append(b, '"')
	}
	b = append(b, ',')
	return append(b, body[1:]...)
}

// appendField appends ,"name":"value" unless value is empty (omitempty).
func appendField(b []byte, name, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":`...)
	return appendString(b, value)
}

// appendString appends s as a JSON string. Plain printable ASCII (what nearly every field holds) is copied; any
// other string goes through encoding/json, so escaping stays exactly json.Marshal's.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Truncated marks the end of a string Clip cut.
const Truncated = "...(truncated)"

// Clip returns s, or its longest prefix followed by Truncated, whose JSON string in a record takes at most max
// bytes, quotes left out. An escape counts at its written length (up to 6 bytes for one input byte: "\u003c" for
// '<', "\ufffd" for a byte of invalid UTF-8), so bounding each string a caller controls bounds its record, and no
// request can make its record too large to write. max must be over len(Truncated).
func Clip(s string, max int) string {
	if len(s) <= max/6 { // no byte of s takes more than 6 written: the strings of a request, nearly always
		return s
	}
	n, cut := 0, -1
	for i := 0; i < len(s); {
		w, size := escapedLen(s[i:])
		if n+w > max-len(Truncated) && cut < 0 {
			cut = i
		}
		if n += w; n > max {
			return s[:cut] + Truncated
		}
		i += size
	}
	return s
}

// escapedLen is how many bytes encoding/json writes for the first character of s (HTML-safe escaping), and how
// many bytes of s that character takes.
func escapedLen(s string) (written, size int) {
	if c := s[0]; c < utf8.RuneSelf {
		switch {
		case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
			return 2, 1
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			return 6, 1
		}
		return 1, 1
	}
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
		return 6, size
	}
	return size, size
}
