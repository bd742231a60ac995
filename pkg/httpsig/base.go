package httpsig

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// Message is the HTTP message a signature applies to. When Response is nil the target is Request; otherwise the
// target is Response and Request, if set, is the request it answers, from which `req` components are taken.
//
// Request-derived components follow Go's server and client conventions: @request-target is RequestURI on a server
// request and URL.RequestURI() on a client request; @authority is Host (else URL.Host), lower-cased without the
// default port; @scheme is URL.Scheme, else "https" when TLS is set, else "http". Behind a TLS-terminating proxy
// the last rule is wrong, which is why the WIMSE profile covers @request-target rather than @target-uri.
type Message struct {
	Request  *http.Request
	Response *http.Response
}

// dictionaryFields are the fields this package knows to be Dictionaries, so the `sf` flag can re-serialize them.
// RFC 9421 Section 2.1.1 requires the application to know the type; other fields with `sf` are refused.
var dictionaryFields = map[string]bool{
	"accept-signature": true, "content-digest": true, "repr-digest": true, "signature": true,
	"signature-input": true, "want-content-digest": true, "want-repr-digest": true, "priority": true,
}

// SignatureBase returns the RFC 9421 Section 2.5 signature base of in over m. An unknown or inapplicable
// component, a covered field that is absent, a repeated component or a non-ASCII value is autherr.ErrMalformed.
func SignatureBase(m Message, in *SignatureInput) ([]byte, error) {
	base, _, err := appendSignatureBase(make([]byte, 0, 1024), m, in)
	return base, err
}

// basePool holds the buffers signature bases are built in: a base is hashed and dropped, so Sign and Verify reuse
// one instead of allocating about a kilobyte per message.
var basePool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// maxPooledBase keeps the buffer of an unusually large base out of the pool.
const maxPooledBase = 16 << 10

func getBaseBuf() *[]byte { return basePool.Get().(*[]byte) }

func putBaseBuf(b *[]byte, used []byte) {
	if cap(used) > maxPooledBase {
		return
	}
	*b = used[:0]
	basePool.Put(b)
}

// appendSignatureBase appends the signature base of in over m to b. It also returns the offset in the result where
// the serialized signature parameters (the Signature-Input member value) start, the base's last line, so a signer
// need not serialize them twice.
func appendSignatureBase(b []byte, m Message, in *SignatureInput) (base []byte, paramsAt int, err error) {
	if m.Request == nil && m.Response == nil {
		return b, 0, fmt.Errorf("httpsig: %w: no message to sign or verify", autherr.ErrMalformed)
	}
	if len(in.Components) > MaxComponents {
		return b, 0, fmt.Errorf("httpsig: %w: %d covered components, limit %d",
			autherr.ErrTooLarge, len(in.Components), MaxComponents)
	}
	var seenBuf [16]string
	seen := seenBuf[:0]
	for _, c := range in.Components {
		if !validComponentName(c.Name) {
			return b, 0, fmt.Errorf("httpsig: %w: invalid component name %q", autherr.ErrMalformed, c.Name)
		}
		key, err := canonicalComponentKey(c)
		if err != nil {
			return b, 0, fmt.Errorf("httpsig: %w: component %s: %v", autherr.ErrMalformed, c, err)
		}
		if slices.Contains(seen, key) {
			return b, 0, fmt.Errorf("httpsig: %w: component %s is covered twice", autherr.ErrMalformed, c)
		}
		seen = append(seen, key)
		v, err := componentValue(m, c)
		if err != nil {
			return b, 0, fmt.Errorf("httpsig: %w: component %s: %v", autherr.ErrMalformed, c, err)
		}
		if b, err = appendComponentID(b, c); err != nil {
			return b, 0, fmt.Errorf("httpsig: %w: component %s: %v", autherr.ErrMalformed, c, err)
		}
		b = append(b, ": "...)
		b = append(b, v...)
		b = append(b, '\n')
	}
	b = append(b, `"@signature-params": `...)
	paramsAt = len(b)
	if b, err = in.appendTo(b); err != nil {
		return b, 0, fmt.Errorf("httpsig: %w: signature parameters: %v", autherr.ErrMalformed, err)
	}
	return b, paramsAt, nil
}

// canonicalComponentKey identifies a component regardless of parameter order (RFC 9421 Section 2: `"foo";a;b`
// and `"foo";b;a` are the same component).
func canonicalComponentKey(c Component) (string, error) {
	if len(c.Params) == 0 {
		return c.Name, nil
	}
	ps := make([]string, 0, len(c.Params))
	for _, p := range c.Params {
		b, err := appendParam(nil, p.Key, toBare(p.Value))
		if err != nil {
			return "", err
		}
		ps = append(ps, string(b))
	}
	slices.Sort(ps)
	return c.Name + strings.Join(ps, ""), nil
}

func componentValue(m Message, c Component) (string, error) {
	useReq := false
	for _, p := range c.Params {
		switch p.Key {
		case "req", "sf", "bs":
			if b, ok := p.Value.(bool); !ok || !b {
				return "", fmt.Errorf("parameter %s must be a true boolean", p.Key)
			}
			useReq = useReq || p.Key == "req"
		case "key", "name":
			if _, ok := p.Value.(string); !ok {
				return "", fmt.Errorf("parameter %s must be a string", p.Key)
			}
		case "tr":
			return "", fmt.Errorf("trailer fields are not supported")
		default:
			return "", fmt.Errorf("unknown parameter %q", p.Key)
		}
	}
	var r *http.Request
	var resp *http.Response
	switch {
	case useReq && m.Response == nil:
		return "", fmt.Errorf("the req parameter is only allowed in a response signature")
	case useReq && m.Request == nil:
		return "", fmt.Errorf("covers the request, which is not available")
	case useReq:
		r = m.Request
	case m.Response != nil:
		resp = m.Response
	default:
		r = m.Request
	}
	if strings.HasPrefix(c.Name, "@") {
		return derivedValue(r, resp, c)
	}
	return fieldValue(r, resp, c)
}

func derivedValue(r *http.Request, resp *http.Response, c Component) (string, error) {
	for _, p := range c.Params {
		if p.Key == "sf" || p.Key == "bs" || p.Key == "key" || (p.Key == "name" && c.Name != "@query-param") {
			return "", fmt.Errorf("parameter %s does not apply to a derived component", p.Key)
		}
	}
	if c.Name == "@status" {
		if resp == nil {
			return "", fmt.Errorf("@status applies to responses only")
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			return "", fmt.Errorf("status %d is not a three-digit code", resp.StatusCode)
		}
		return strconv.Itoa(resp.StatusCode), nil
	}
	if r == nil {
		return "", fmt.Errorf("%s applies to requests; a response signature covers it with req", c.Name)
	}
	var v string
	switch c.Name {
	case "@method":
		v = r.Method
		if v == "" {
			v = http.MethodGet
		}
	case "@target-uri":
		v = targetURI(r)
	case "@authority":
		v = authority(r)
	case "@scheme":
		v = scheme(r)
	case "@request-target":
		v = requestTarget(r)
	case "@path":
		v = requestURL(r).EscapedPath()
		if v == "" {
			v = "/"
		}
	case "@query":
		v = "?" + requestURL(r).RawQuery
	case "@query-param":
		name, ok := c.param("name")
		if !ok {
			return "", fmt.Errorf("@query-param needs a name parameter")
		}
		var err error
		if v, err = queryParam(requestURL(r).RawQuery, name.(string)); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("unknown derived component")
	}
	if err := checkValue(v, false); err != nil {
		return "", err
	}
	if v != strings.TrimSpace(v) {
		return "", fmt.Errorf("value has leading or trailing whitespace")
	}
	return v, nil
}

func requestURL(r *http.Request) *url.URL {
	if r.URL == nil {
		return &url.URL{}
	}
	return r.URL
}

func requestTarget(r *http.Request) string {
	if r.RequestURI != "" {
		return r.RequestURI
	}
	return requestURL(r).RequestURI()
}

func scheme(r *http.Request) string {
	if s := requestURL(r).Scheme; s != "" {
		return strings.ToLower(s)
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// authority is the lower-cased host[:port] with the scheme's default port removed (RFC 9110 Section 4.2.3).
func authority(r *http.Request) string {
	host := r.Host
	if host == "" {
		host = requestURL(r).Host
	}
	host = strings.ToLower(host)
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		switch port := host[i+1:]; {
		case port == "", port == "80" && scheme(r) == "http", port == "443" && scheme(r) == "https":
			host = host[:i]
		}
	}
	return host
}

func targetURI(r *http.Request) string {
	rt := requestTarget(r)
	switch {
	case strings.HasPrefix(rt, "/"):
		return scheme(r) + "://" + authority(r) + rt
	case rt == "*" || r.Method == http.MethodConnect:
		return scheme(r) + "://" + authority(r)
	default: // absolute-form
		return rt
	}
}

// queryParam returns the re-encoded value of the single query parameter whose re-encoded name is name, parsing the
// query as application/x-www-form-urlencoded (RFC 9421 Section 2.2.8).
func queryParam(rawQuery, name string) (string, error) {
	var found []string
	for pair := range strings.SplitSeq(rawQuery, "&") {
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if formEncode(formDecode(k)) == name {
			found = append(found, formEncode(formDecode(v)))
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("query parameter %q is not in the request", name)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("query parameter %q occurs %d times", name, len(found))
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// formDecode is the WHATWG urlencoded parser's per-name/value step: '+' is a space, valid %XX escapes are decoded
// (invalid ones are kept literally), and the bytes are read as UTF-8 with invalid bytes replaced by U+FFFD.
func formDecode(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' {
			b = append(b, ' ')
			continue
		}
		if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	if utf8.Valid(b) {
		return string(b)
	}
	var out strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		out.WriteRune(r)
		b = b[n:]
	}
	return out.String()
}

// formEncode percent-encodes every byte outside the application/x-www-form-urlencoded safe set (ASCII
// alphanumerics and *-._), with a space as %20 as RFC 9421 Section 2.2.8 shows.
func formEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlpha(c) || isDigit(c) || c == '*' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func fieldValue(r *http.Request, resp *http.Response, c Component) (string, error) {
	if _, ok := c.param("name"); ok {
		return "", fmt.Errorf("parameter name applies to @query-param only")
	}
	var lines []string
	if resp != nil {
		lines = fieldLines(resp.Header, c.Name)
	} else {
		lines = fieldLines(r.Header, c.Name)
		if len(lines) == 0 && c.Name == "host" {
			// Go keeps Host out of Header; it is still a field of the request.
			if h := r.Host; h != "" {
				lines = []string{h}
			} else if h := requestURL(r).Host; h != "" {
				lines = []string{h}
			}
		}
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("field is not present in the message")
	}
	bs, sf := c.flag("bs"), c.flag("sf")
	key, hasKey := c.param("key")
	if bs && (sf || hasKey) {
		return "", fmt.Errorf("bs cannot be combined with sf or key")
	}
	var one [1]string // most fields have one line
	trimmed := one[:0]
	for _, l := range lines {
		trimmed = append(trimmed, strings.Trim(l, " \t"))
	}
	if bs {
		var b strings.Builder
		for i, l := range trimmed {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte(':')
			b.WriteString(base64.StdEncoding.EncodeToString([]byte(l)))
			b.WriteByte(':')
		}
		return b.String(), nil
	}
	for _, l := range trimmed {
		if err := checkValue(l, true); err != nil {
			return "", err
		}
	}
	combined := strings.Join(trimmed, ", ")
	switch {
	case hasKey:
		d, err := parseSFDictionary(combined)
		if err != nil {
			return "", fmt.Errorf("field is not a valid dictionary: %v", err)
		}
		mem, ok := d.get(key.(string))
		if !ok {
			return "", fmt.Errorf("dictionary has no member %q", key)
		}
		b, err := appendMemberValue(nil, mem)
		if err != nil {
			return "", err
		}
		return string(b), nil
	case sf:
		if !dictionaryFields[c.Name] {
			return "", fmt.Errorf("structured type of field %q is not known", c.Name)
		}
		d, err := parseSFDictionary(combined)
		if err != nil {
			return "", fmt.Errorf("field is not a valid dictionary: %v", err)
		}
		return serializeSFDictionary(d.members)
	}
	return combined, nil
}

// fieldLines is h.Values(name) for a component name: Header.Values allocates the canonical form of a lower-case
// name on every call, which this builds on the stack for names of letters, digits and hyphens (anything else goes
// to Header.Values).
func fieldLines(h http.Header, name string) []string {
	var buf [64]byte
	if name == "" || len(name) > len(buf) {
		return h.Values(name)
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case c >= 'A' && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case c == '-', c >= '0' && c <= '9':
		default:
			return h.Values(name)
		}
		buf[i] = c
		upper = c == '-'
	}
	return h[string(buf[:len(name)])]
}

// checkValue refuses values that cannot appear in a signature base: control characters (other than HTAB in field
// values), which includes CR and LF, and non-ASCII bytes (RFC 9421 Section 2.5 step 4).
func checkValue(v string, field bool) error {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if (c < 0x20 && !(field && c == '\t')) || c > 0x7e {
			return fmt.Errorf("value has a control or non-ASCII byte 0x%02x", c)
		}
	}
	return nil
}
