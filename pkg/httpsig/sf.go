package httpsig

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// This file is the subset of RFC 8941 Structured Field Values that RFC 9421 and RFC 9530 need: Dictionaries and
// Lists whose members are Items or Inner Lists, Items with Parameters, and the bare types String, Token, Integer,
// Decimal, Byte Sequence and Boolean. Dates and Display Strings (RFC 9651) are refused. Serialization is the strict
// algorithm of RFC 8941 Section 4, which RFC 9421 uses for @signature-params and the `sf`, `key` and `bs` parameters.

// Parser bounds. Callers also cap the input length; these stop a short input from describing a large structure.
const (
	sfMaxMembers    = 256 // members of one Dictionary or List
	sfMaxInnerItems = 256 // items in one Inner List
	sfMaxParams     = 64  // parameters on one Item or Inner List
)

// errSFTooLarge marks a structure over the parser bounds, so callers can map it to autherr.ErrTooLarge.
var errSFTooLarge = errors.New("structured field exceeds parser limits")

type sfKind uint8

const (
	sfString sfKind = iota + 1
	sfToken
	sfInteger
	sfDecimal // num holds thousandths
	sfBytes
	sfBool
)

// bareItem is one RFC 8941 bare item.
type bareItem struct {
	kind sfKind
	str  string // String, Token
	num  int64  // Integer; Decimal in thousandths
	bin  []byte // Byte Sequence
	bl   bool   // Boolean
}

func sfStr(s string) bareItem   { return bareItem{kind: sfString, str: s} }
func sfTok(s string) bareItem   { return bareItem{kind: sfToken, str: s} }
func sfInt(n int64) bareItem    { return bareItem{kind: sfInteger, num: n} }
func sfBin(b []byte) bareItem   { return bareItem{kind: sfBytes, bin: b} }
func sfBoolean(b bool) bareItem { return bareItem{kind: sfBool, bl: b} }

func (b bareItem) isTrue() bool { return b.kind == sfBool && b.bl }

type param struct {
	key string
	val bareItem
}

// params keeps parameters in order; RFC 9421 signs them in the order they were sent.
type params []param

func (ps params) get(key string) (bareItem, bool) {
	for _, p := range ps {
		if p.key == key {
			return p.val, true
		}
	}
	return bareItem{}, false
}

type item struct {
	val    bareItem
	params params
}

// putMember sets the member of list whose key (keyOf) is key to m, in the position the key first took (RFC 8941
// Section 4.2.2: the last value wins), or appends m; replaced reports the former. A full list refuses a new key.
func putMember[T any](list []T, m T, key string, keyOf func(*T) string) (out []T, replaced bool, err error) {
	for i := range list {
		if keyOf(&list[i]) == key {
			list[i] = m
			return list, true, nil
		}
	}
	if len(list) == sfMaxMembers {
		return list, false, errSFTooLarge
	}
	return append(list, m), false, nil
}

// member is a Dictionary or List member: an Item, or an Inner List when inner is set.
type member struct {
	key    string // Dictionary members only
	inner  bool
	val    bareItem // Item value when !inner
	items  []item   // Inner List items when inner
	params params   // the Item's or the Inner List's parameters
}

// dictionary keeps members in order. dup reports that a key occurred more than once (RFC 8941 keeps the last value
// in the first position); the signature and digest fields refuse that, since two parsers could disagree on intent.
type dictionary struct {
	members []member
	dup     bool
}

func (d *dictionary) get(key string) (member, bool) {
	for _, m := range d.members {
		if m.key == key {
			return m, true
		}
	}
	return member{}, false
}

type sfParser struct {
	s string
	i int
}

func (p *sfParser) eof() bool  { return p.i >= len(p.s) }
func (p *sfParser) peek() byte { return p.s[p.i] }

func (p *sfParser) errf(format string, args ...any) error {
	return fmt.Errorf("structured field: at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *sfParser) skipSP() {
	for !p.eof() && p.peek() == ' ' {
		p.i++
	}
}

func (p *sfParser) skipOWS() {
	for !p.eof() && (p.peek() == ' ' || p.peek() == '\t') {
		p.i++
	}
}

// parseSFDictionary parses a whole field value as a Dictionary (RFC 8941 Section 4.2.2).
//
// The parser collects members, items and parameters in arrays on its stack and copies each list out once at its
// exact length: a signature or digest field is parsed on every request, and growing slices from empty cost more
// than the rest of the parse.
func parseSFDictionary(s string) (dictionary, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var buf [4]member
	members := buf[:0]
	dup := false
	for !p.eof() {
		key, err := p.parseKey()
		if err != nil {
			return dictionary{}, err
		}
		var m member
		if !p.eof() && p.peek() == '=' {
			p.i++
			if m, err = p.parseItemOrInnerList(); err != nil {
				return dictionary{}, err
			}
		} else {
			m.val = sfBoolean(true)
			if m.params, err = p.parseParams(); err != nil {
				return dictionary{}, err
			}
		}
		m.key = key
		var replaced bool
		if members, replaced, err = putMember(members, m, key, func(m *member) string { return m.key }); err != nil {
			return dictionary{}, err
		}
		dup = dup || replaced
		if err := p.nextMember(); err != nil {
			return dictionary{}, err
		}
	}
	return dictionary{members: clip(members), dup: dup}, nil
}

// clip returns a copy of s at its exact length (nil when empty), so s may live on the caller's stack.
func clip[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// parseSFList parses a whole field value as a List (RFC 8941 Section 4.2.1).
func parseSFList(s string) ([]member, error) {
	p := &sfParser{s: s}
	p.skipSP()
	var out []member
	for !p.eof() {
		if len(out) == sfMaxMembers {
			return nil, errSFTooLarge
		}
		m, err := p.parseItemOrInnerList()
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		if err := p.nextMember(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseSFItem parses a whole field value as an Item (RFC 8941 Section 4.2.3).
func parseSFItem(s string) (item, error) {
	p := &sfParser{s: s}
	p.skipSP()
	it, err := p.parseItem()
	if err != nil {
		return item{}, err
	}
	p.skipSP()
	if !p.eof() {
		return item{}, p.errf("trailing characters after item")
	}
	return it, nil
}

// nextMember consumes the separator between Dictionary or List members and refuses a trailing comma.
func (p *sfParser) nextMember() error {
	p.skipOWS()
	if p.eof() {
		return nil
	}
	if p.peek() != ',' {
		return p.errf("expected ',' between members, found %q", p.peek())
	}
	p.i++
	p.skipOWS()
	if p.eof() {
		return p.errf("trailing comma")
	}
	return nil
}

func (p *sfParser) parseItemOrInnerList() (member, error) {
	if !p.eof() && p.peek() == '(' {
		return p.parseInnerList()
	}
	it, err := p.parseItem()
	if err != nil {
		return member{}, err
	}
	return member{val: it.val, params: it.params}, nil
}

func (p *sfParser) parseInnerList() (member, error) {
	p.i++ // '('
	m := member{inner: true}
	var buf [8]item
	items := buf[:0]
	for !p.eof() {
		p.skipSP()
		if p.eof() {
			break
		}
		if p.peek() == ')' {
			p.i++
			var err error
			m.items = clip(items)
			m.params, err = p.parseParams()
			return m, err
		}
		if len(items) == sfMaxInnerItems {
			return member{}, errSFTooLarge
		}
		it, err := p.parseItem()
		if err != nil {
			return member{}, err
		}
		items = append(items, it)
		if p.eof() || (p.peek() != ' ' && p.peek() != ')') {
			return member{}, p.errf("expected ' ' or ')' in inner list")
		}
	}
	return member{}, p.errf("unterminated inner list")
}

func (p *sfParser) parseItem() (item, error) {
	v, err := p.parseBareItem()
	if err != nil {
		return item{}, err
	}
	ps, err := p.parseParams()
	if err != nil {
		return item{}, err
	}
	return item{val: v, params: ps}, nil
}

func (p *sfParser) parseParams() (params, error) {
	var buf [8]param
	ps, err := p.collectParams(buf[:0])
	if err != nil {
		return nil, err
	}
	return clip(ps), nil
}

// collectParams parses parameters, appending them to ps (which may live on the caller's stack) and returning it.
func (p *sfParser) collectParams(ps params) (params, error) {
	for !p.eof() && p.peek() == ';' {
		p.i++
		p.skipSP()
		key, err := p.parseKey()
		if err != nil {
			return nil, err
		}
		v := sfBoolean(true)
		if !p.eof() && p.peek() == '=' {
			p.i++
			if v, err = p.parseBareItem(); err != nil {
				return nil, err
			}
		}
		replaced := false
		for i := range ps {
			if ps[i].key == key {
				ps[i].val, replaced = v, true
				break
			}
		}
		if !replaced {
			if len(ps) == sfMaxParams {
				return nil, errSFTooLarge
			}
			ps = append(ps, param{key: key, val: v})
		}
	}
	return ps, nil
}

func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }

func isKeyChar(c byte) bool {
	return isLCAlpha(c) || isDigit(c) || c == '_' || c == '-' || c == '.' || c == '*'
}

// isTChar reports RFC 9110 tchar.
func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (p *sfParser) parseKey() (string, error) {
	if p.eof() || !(isLCAlpha(p.peek()) || p.peek() == '*') {
		return "", p.errf("expected key")
	}
	start := p.i
	for !p.eof() && isKeyChar(p.peek()) {
		p.i++
	}
	return p.s[start:p.i], nil
}

func (p *sfParser) parseBareItem() (bareItem, error) {
	if p.eof() {
		return bareItem{}, p.errf("expected bare item, found end of input")
	}
	switch c := p.peek(); {
	case c == '-' || isDigit(c):
		return p.parseNumber()
	case c == '"':
		return p.parseString()
	case c == ':':
		return p.parseBytes()
	case c == '?':
		return p.parseBool()
	case isAlpha(c) || c == '*':
		return p.parseToken()
	default:
		return bareItem{}, p.errf("unsupported bare item starting with %q", c)
	}
}

func (p *sfParser) parseNumber() (bareItem, error) {
	neg := false
	if p.peek() == '-' {
		neg = true
		p.i++
	}
	if p.eof() || !isDigit(p.peek()) {
		return bareItem{}, p.errf("expected digit")
	}
	start := p.i
	dot := -1
	for !p.eof() {
		c := p.peek()
		if isDigit(c) {
			p.i++
		} else if c == '.' && dot < 0 {
			if p.i-start > 12 {
				return bareItem{}, p.errf("decimal integer part too long")
			}
			dot = p.i
			p.i++
		} else {
			break
		}
		if dot < 0 && p.i-start > 15 {
			return bareItem{}, p.errf("integer too long")
		}
		if dot >= 0 && p.i-start > 16 {
			return bareItem{}, p.errf("decimal too long")
		}
	}
	num := p.s[start:p.i]
	if dot < 0 {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return bareItem{}, p.errf("bad integer")
		}
		if neg {
			n = -n
		}
		return sfInt(n), nil
	}
	ip, fp := p.s[start:dot], p.s[dot+1:p.i]
	if len(fp) == 0 || len(fp) > 3 {
		return bareItem{}, p.errf("decimal needs 1 to 3 fractional digits")
	}
	whole, err := strconv.ParseInt(ip, 10, 64)
	if err != nil {
		return bareItem{}, p.errf("bad decimal")
	}
	frac, _ := strconv.ParseInt(fp+strings.Repeat("0", 3-len(fp)), 10, 64)
	n := whole*1000 + frac
	if neg {
		n = -n
	}
	return bareItem{kind: sfDecimal, num: n}, nil
}

func (p *sfParser) parseString() (bareItem, error) {
	p.i++ // '"'
	// Most strings have no escapes: return them as a slice of the input.
	for j := p.i; j < len(p.s); j++ {
		c := p.s[j]
		if c == '"' {
			v := p.s[p.i:j]
			p.i = j + 1
			return sfStr(v), nil
		}
		if c == '\\' || c < 0x20 || c > 0x7e {
			break
		}
	}
	var b strings.Builder
	for !p.eof() {
		c := p.peek()
		p.i++
		switch {
		case c == '\\':
			if p.eof() {
				return bareItem{}, p.errf("unterminated escape in string")
			}
			n := p.peek()
			if n != '"' && n != '\\' {
				return bareItem{}, p.errf("bad escape in string")
			}
			b.WriteByte(n)
			p.i++
		case c == '"':
			return sfStr(b.String()), nil
		case c < 0x20 || c > 0x7e:
			return bareItem{}, p.errf("non-printable character in string")
		default:
			b.WriteByte(c)
		}
	}
	return bareItem{}, p.errf("unterminated string")
}

func (p *sfParser) parseToken() (bareItem, error) {
	start := p.i
	p.i++
	for !p.eof() && (isTChar(p.peek()) || p.peek() == ':' || p.peek() == '/') {
		p.i++
	}
	return sfTok(p.s[start:p.i]), nil
}

func isB64Char(c byte) bool { return isAlpha(c) || isDigit(c) || c == '+' || c == '/' || c == '=' }

func (p *sfParser) parseBytes() (bareItem, error) {
	p.i++ // ':'
	end := strings.IndexByte(p.s[p.i:], ':')
	if end < 0 {
		return bareItem{}, p.errf("unterminated byte sequence")
	}
	enc := p.s[p.i : p.i+end]
	for i := 0; i < len(enc); i++ {
		if !isB64Char(enc[i]) {
			return bareItem{}, p.errf("bad character in byte sequence")
		}
	}
	p.i += end + 1
	b, err := decodeSFBase64(enc)
	if err != nil {
		return bareItem{}, p.errf("bad base64 in byte sequence")
	}
	return sfBin(b), nil
}

// decodeSFBase64 accepts padded or unpadded base64, as RFC 8941 Section 4.2.7 asks of parsers.
func decodeSFBase64(enc string) ([]byte, error) {
	if strings.IndexByte(enc, '=') >= 0 {
		return base64.StdEncoding.DecodeString(enc)
	}
	return base64.RawStdEncoding.DecodeString(enc)
}

func (p *sfParser) parseBool() (bareItem, error) {
	p.i++ // '?'
	if p.eof() {
		return bareItem{}, p.errf("unterminated boolean")
	}
	c := p.peek()
	p.i++
	switch c {
	case '1':
		return sfBoolean(true), nil
	case '0':
		return sfBoolean(false), nil
	}
	return bareItem{}, p.errf("bad boolean")
}

// Serialization (RFC 8941 Section 4.1). Values built by this package are valid by construction; values that came
// from a parse are valid too, so the error paths only guard programmer mistakes (e.g. a string with a control char).
// The writers append to a byte slice, so a signature base is built in one buffer without intermediate strings.

func appendBareItem(b []byte, v bareItem) ([]byte, error) {
	switch v.kind {
	case sfInteger:
		if v.num > 999_999_999_999_999 || v.num < -999_999_999_999_999 {
			return b, fmt.Errorf("structured field: integer %d out of range", v.num)
		}
		b = strconv.AppendInt(b, v.num, 10)
	case sfDecimal:
		n := v.num
		if n < 0 {
			b = append(b, '-')
			n = -n
		}
		b = strconv.AppendInt(b, n/1000, 10)
		b = append(b, '.')
		frac := [3]byte{byte('0' + n%1000/100), byte('0' + n%100/10), byte('0' + n%10)}
		k := 3
		for k > 1 && frac[k-1] == '0' {
			k--
		}
		b = append(b, frac[:k]...)
	case sfString:
		b = append(b, '"')
		if plainString(v.str) {
			b = append(b, v.str...)
			b = append(b, '"')
			break
		}
		for i := 0; i < len(v.str); i++ {
			c := v.str[i]
			if c < 0x20 || c > 0x7e {
				return b, fmt.Errorf("structured field: string has non-printable character 0x%02x", c)
			}
			if c == '"' || c == '\\' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		b = append(b, '"')
	case sfToken:
		if !validToken(v.str) {
			return b, fmt.Errorf("structured field: invalid token %q", v.str)
		}
		b = append(b, v.str...)
	case sfBytes:
		b = append(b, ':')
		b = base64.StdEncoding.AppendEncode(b, v.bin)
		b = append(b, ':')
	case sfBool:
		if v.bl {
			b = append(b, "?1"...)
		} else {
			b = append(b, "?0"...)
		}
	default:
		return b, errors.New("structured field: empty bare item")
	}
	return b, nil
}

// plainString reports whether s serializes as an sf-string without escapes: printable ASCII, no '"' or '\\'.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func validToken(s string) bool {
	if s == "" || !(isAlpha(s[0]) || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(isTChar(c) || c == ':' || c == '/') {
			return false
		}
	}
	return true
}

func validKey(s string) bool {
	if s == "" || !(isLCAlpha(s[0]) || s[0] == '*') {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isKeyChar(s[i]) {
			return false
		}
	}
	return true
}

// appendParam appends one parameter: ";key" for a true Boolean, else ";key=value".
func appendParam(b []byte, key string, val bareItem) ([]byte, error) {
	if !validKey(key) {
		return b, fmt.Errorf("structured field: invalid parameter key %q", key)
	}
	b = append(b, ';')
	b = append(b, key...)
	if val.isTrue() {
		return b, nil
	}
	b = append(b, '=')
	return appendBareItem(b, val)
}

func appendParams(b []byte, ps params) ([]byte, error) {
	var err error
	for _, p := range ps {
		if b, err = appendParam(b, p.key, p.val); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendItem(b []byte, it item) ([]byte, error) {
	b, err := appendBareItem(b, it.val)
	if err != nil {
		return b, err
	}
	return appendParams(b, it.params)
}

func appendInnerList(b []byte, items []item, ps params) ([]byte, error) {
	b = append(b, '(')
	var err error
	for i, it := range items {
		if i > 0 {
			b = append(b, ' ')
		}
		if b, err = appendItem(b, it); err != nil {
			return b, err
		}
	}
	b = append(b, ')')
	return appendParams(b, ps)
}

// appendMemberValue appends an Item or Inner List with its parameters (a Dictionary member_value, or a List
// member).
func appendMemberValue(b []byte, m member) ([]byte, error) {
	if m.inner {
		return appendInnerList(b, m.items, m.params)
	}
	return appendItem(b, item{val: m.val, params: m.params})
}

func serializeSFDictionary(members []member) (string, error) {
	var b []byte
	var err error
	for i, m := range members {
		if !validKey(m.key) {
			return "", fmt.Errorf("structured field: invalid dictionary key %q", m.key)
		}
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, m.key...)
		if !m.inner && m.val.isTrue() {
			if b, err = appendParams(b, m.params); err != nil {
				return "", err
			}
			continue
		}
		b = append(b, '=')
		if b, err = appendMemberValue(b, m); err != nil {
			return "", err
		}
	}
	return string(b), nil
}

func serializeSFList(members []member) (string, error) {
	var b []byte
	var err error
	for i, m := range members {
		if i > 0 {
			b = append(b, ", "...)
		}
		if b, err = appendMemberValue(b, m); err != nil {
			return "", err
		}
	}
	return string(b), nil
}

// sfError maps a parser error to the package's reason codes.
func sfError(what string, err error) error {
	if errors.Is(err, errSFTooLarge) {
		return fmt.Errorf("httpsig: %w: %s: %v", autherr.ErrTooLarge, what, err)
	}
	return fmt.Errorf("httpsig: %w: %s: %v", autherr.ErrMalformed, what, err)
}
