package httpsig

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/agentauth/agentauth/pkg/autherr"
	"github.com/agentauth/agentauth/pkg/wire"
)

// Field names of RFC 9421 (Signature and Signature-Input are in pkg/wire).
const (
	HeaderContentDigest = "Content-Digest"
)

// Limits on what one message may carry.
const (
	MaxSignatures = 16 // labelled signatures in one message
	MaxComponents = 64 // covered components in one signature
)

// Token is a structured-field Token value, as opposed to a String.
type Token string

// Decimal is a structured-field Decimal value (at most three fractional digits survive serialization).
type Decimal float64

// Param is one structured-field parameter of a component identifier or of a signature. Value is a string
// (sf-string), Token, int64, Decimal, []byte or bool. A true bool serializes as the bare key (`;req`).
type Param struct {
	Key   string
	Value any
}

// Component is a covered component identifier: a lower-case field name or a derived component name (@method...)
// with its parameters in order, e.g. {Name: "@query-param", Params: []Param{{"name", "Pet"}}}.
type Component struct {
	Name   string
	Params []Param
}

// Comp builds a Component from a name and boolean flags, e.g. Comp("@method", "req").
func Comp(name string, flags ...string) Component {
	c := Component{Name: name}
	for _, f := range flags {
		c.Params = append(c.Params, Param{Key: f, Value: true})
	}
	return c
}

// String returns the serialized component identifier, e.g. `"@method";req`.
func (c Component) String() string {
	if len(c.Params) == 0 && validComponentName(c.Name) {
		// The common case: a valid name needs no escaping inside an sf-string.
		return `"` + c.Name + `"`
	}
	b, err := appendComponentID(nil, c)
	if err != nil {
		return fmt.Sprintf("<invalid component %q: %v>", c.Name, err)
	}
	return string(b)
}

// sameAs reports whether c and o are the same component identifier as serialized (name, and parameters in order).
func (c Component) sameAs(o Component) bool {
	if c.Name != o.Name || len(c.Params) != len(o.Params) {
		return false
	}
	return len(c.Params) == 0 || c.String() == o.String()
}

// appendComponentID appends the serialized component identifier c: its name as an sf-string, then its parameters.
func appendComponentID(b []byte, c Component) ([]byte, error) {
	b, err := appendBareItem(b, sfStr(c.Name))
	if err != nil {
		return b, err
	}
	return appendParamList(b, c.Params)
}

// appendParamList appends ps as structured-field parameters, in order.
func appendParamList(b []byte, ps []Param) ([]byte, error) {
	var err error
	for _, p := range ps {
		if b, err = appendParam(b, p.Key, toBare(p.Value)); err != nil {
			return b, err
		}
	}
	return b, nil
}

// param returns the named parameter.
func (c Component) param(key string) (any, bool) {
	for _, p := range c.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// flag reports whether the boolean parameter key is present and true.
func (c Component) flag(key string) bool {
	v, ok := c.param(key)
	b, isBool := v.(bool)
	return ok && isBool && b
}

// SignatureInput is one signature's metadata: its label, covered components and signature parameters (created,
// expires, nonce, tag, keyid, alg and any application parameter), each in the order they are serialized.
type SignatureInput struct {
	Label      string
	Components []Component
	Params     []Param
}

// Param returns the named signature parameter.
func (in *SignatureInput) Param(key string) (any, bool) {
	for _, p := range in.Params {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

// StringParam returns a String parameter; ok is false if it is absent or not a String.
func (in *SignatureInput) StringParam(key string) (string, bool) {
	v, _ := in.Param(key)
	s, ok := v.(string)
	return s, ok
}

// TimeParam returns an Integer parameter as Unix seconds (created, expires); ok is false if absent or not an Integer.
func (in *SignatureInput) TimeParam(key string) (time.Time, bool) {
	v, _ := in.Param(key)
	n, ok := v.(int64)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// String returns the serialized value of the signature parameters: the @signature-params component value, which
// is also the member value in Signature-Input.
func (in *SignatureInput) String() string {
	s, err := in.serialize()
	if err != nil {
		return fmt.Sprintf("<invalid signature input: %v>", err)
	}
	return s
}

func (in *SignatureInput) serialize() (string, error) {
	b, err := in.appendTo(make([]byte, 0, 256))
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// appendTo appends the serialized signature parameters: the Inner List of covered components, then the
// parameters.
func (in *SignatureInput) appendTo(b []byte) ([]byte, error) {
	b = append(b, '(')
	var err error
	for i, c := range in.Components {
		if i > 0 {
			b = append(b, ' ')
		}
		if b, err = appendComponentID(b, c); err != nil {
			return b, err
		}
	}
	b = append(b, ')')
	return appendParamList(b, in.Params)
}

func toBare(v any) bareItem {
	switch v := v.(type) {
	case string:
		return sfStr(v)
	case Token:
		return sfTok(string(v))
	case int64:
		return sfInt(v)
	case int:
		return sfInt(int64(v))
	case Decimal:
		return bareItem{kind: sfDecimal, num: int64(math.Round(float64(v) * 1000))}
	case []byte:
		return sfBin(v)
	case bool:
		return sfBoolean(v)
	}
	return bareItem{} // serializing it fails with "empty bare item"
}

// boxedTag is the WIMSE tag as an any, made once: every WIMSE signature carries it, and a string put in an
// interface is otherwise a new allocation each time.
var boxedTag any = Tag

func fromBare(b bareItem) any {
	switch b.kind {
	case sfString:
		if b.str == Tag {
			return boxedTag
		}
		return b.str
	case sfToken:
		return Token(b.str)
	case sfInteger:
		return b.num
	case sfDecimal:
		return Decimal(float64(b.num) / 1000)
	case sfBytes:
		return b.bin
	case sfBool:
		return b.bl
	}
	return nil
}

func fromParams(ps params) []Param {
	if len(ps) == 0 {
		return nil
	}
	return appendFromParams(make([]Param, 0, len(ps)), ps)
}

// appendFromParams appends ps as Params to dst.
func appendFromParams(dst []Param, ps params) []Param {
	for _, p := range ps {
		dst = append(dst, Param{Key: p.key, Value: fromBare(p.val)})
	}
	return dst
}

// validComponentName accepts a lower-case field name (an RFC 9110 token) or "@" followed by one.
func validComponentName(name string) bool {
	n := strings.TrimPrefix(name, "@")
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !isTChar(c) || (c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// ParseSignatureInput parses the Signature-Input field lines of a message into its signatures, in field order.
// It checks the structure RFC 9421 requires (an Inner List of Strings naming components; created and expires
// Integers; nonce, alg, keyid and tag Strings) but not what an application requires.
func ParseSignatureInput(fieldLines []string) ([]SignatureInput, error) {
	value, err := combineSFLines(wire.HeaderSignatureInput, fieldLines)
	if err != nil {
		return nil, err
	}
	return parseSignatureInputs(value)
}

// ParseSignature parses the Signature field lines of a message into signature bytes by label.
func ParseSignature(fieldLines []string) (map[string][]byte, error) {
	sigs, err := parseSignature(fieldLines)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(sigs))
	for _, m := range sigs {
		out[m.key] = m.val.bin
	}
	return out, nil
}

// parseSignature is ParseSignature returning the members in field order, each a Byte Sequence without a map.
func parseSignature(fieldLines []string) ([]member, error) {
	value, err := combineSFLines(wire.HeaderSignature, fieldLines)
	if err != nil {
		return nil, err
	}
	d, err := parseSFDictionary(value)
	if err != nil {
		return nil, sfError(wire.HeaderSignature, err)
	}
	if d.dup {
		return nil, fmt.Errorf("httpsig: %w: Signature repeats a label", autherr.ErrMalformed)
	}
	if len(d.members) > MaxSignatures {
		return nil, fmt.Errorf("httpsig: %w: Signature has %d signatures, limit %d",
			autherr.ErrTooLarge, len(d.members), MaxSignatures)
	}
	for _, m := range d.members {
		if m.inner || m.val.kind != sfBytes {
			return nil, fmt.Errorf("httpsig: %w: Signature %q is not a byte sequence", autherr.ErrMalformed, m.key)
		}
	}
	return d.members, nil
}
