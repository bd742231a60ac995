package mcp

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"maps"
	"mime"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauth/agentauth/internal/urlpath"
	"github.com/agentauth/agentauth/pkg/autherr"
)

// JSON-RPC error codes this package answers with; see the package documentation.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeInvalidParams  = -32602
	CodeDenied         = -32001
)

// Limits on one message. The body limit is the caller's (Parse's maxBytes); these bound the work one body can
// cause regardless of it.
const (
	// DefaultMaxBytes is used when Parse is given a maxBytes <= 0.
	DefaultMaxBytes = 1 << 20
	// MaxBatch is the largest batch accepted: every element costs a policy evaluation.
	MaxBatch = 128
)

// Kind says what a JSON-RPC message is.
type Kind uint8

const (
	// KindRequest has a method and an id and expects a response.
	KindRequest Kind = iota + 1
	// KindNotification has a method and no id.
	KindNotification
	// KindResponse carries a result or an error for a request the server sent to the client.
	KindResponse
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	}
	return "invalid"
}

// Target says what a call acts on, beyond the MCP server itself.
type Target uint8

const (
	// TargetServer: the call names nothing inside the server (initialize, tools/list, ping, responses...).
	TargetServer Target = iota
	// TargetTool: tools/call; Name is the tool name.
	TargetTool
	// TargetResource: resources/read, resources/subscribe, resources/unsubscribe, completion/complete of a
	// resource template; Name is the resource URI.
	TargetResource
	// TargetPrompt: prompts/get, completion/complete of a prompt; Name is the prompt name.
	TargetPrompt
)

// Call is one JSON-RPC message of a body, reduced to what authorization needs.
type Call struct {
	Kind Kind
	// ID is the raw JSON id (a string or a number); nil for a notification.
	ID stdjson.RawMessage
	// Method is the JSON-RPC method; empty for a response.
	Method string
	Target Target
	// Name is the tool or prompt name, or the resource URI, per Target.
	Name string
	// Args are the scalar top-level arguments of tools/call and prompts/get: strings as they are, numbers and
	// booleans as their JSON text. Nested objects, arrays and nulls are left out.
	Args map[string]string
}

// Message is a parsed body: one call, or the elements of a batch in order.
type Message struct {
	Calls []Call
	// Batch is true when the body was a JSON array; the answer must then be an array too.
	Batch bool
}

// Error is a message that must not be forwarded. Code is the JSON-RPC error code to answer with, ID the id of the
// offending element when it could be read (else nil, answered as null). It wraps autherr.ErrMalformed or
// autherr.ErrTooLarge.
type Error struct {
	Code   int
	ID     stdjson.RawMessage
	Msg    string
	reason error
}

func (e *Error) Error() string { return fmt.Sprintf("mcp: %v: %s", e.reason, e.Msg) }

// Unwrap returns the autherr reason.
func (e *Error) Unwrap() error { return e.reason }

// Response is the JSON-RPC error object to answer with.
func (e *Error) Response() []byte { return JSONRPCError(e.ID, e.Code, e.Msg) }

func newError(code int, reason error, id jsontext.Value, format string, args ...any) *Error {
	return &Error{Code: code, ID: stdjson.RawMessage(id), Msg: fmt.Sprintf(format, args...), reason: reason}
}

// JSONRPCError builds {"jsonrpc":"2.0","id":id,"error":{"code":code,"message":message}}. A nil or invalid id is
// written as null, as JSON-RPC requires when the id could not be determined.
func JSONRPCError(id stdjson.RawMessage, code int, message string) []byte {
	resp := struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      jsontext.Value `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: jsontext.Value("null")}
	if k := jsontext.Value(id).Kind(); (k == '"' || k == '0') && jsontext.Value(id).IsValid() {
		resp.ID = jsontext.Value(id)
	}
	resp.Error.Code = code
	resp.Error.Message = message
	// Marshal cannot fail: every field is a plain string, int or validated raw value. Invalid UTF-8 in message
	// is replaced rather than rejected so that an error answer is always produced.
	out, err := json.Marshal(resp, jsontext.AllowInvalidUTF8(true))
	if err != nil {
		return []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}`)
	}
	return out
}

// Parse reads a streamable-HTTP POST body holding one JSON-RPC 2.0 message or a batch of them. contentType is the
// request's Content-Type and must be application/json, with no charset or charset utf-8. A body over maxBytes
// (DefaultMaxBytes when maxBytes <= 0) is refused before it is read. Any malformed element rejects the whole
// body: a proxy must not forward a message it could not fully understand.
func Parse(contentType string, body []byte, maxBytes int) (Message, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if len(body) > maxBytes {
		return Message{}, newError(CodeInvalidRequest, autherr.ErrTooLarge, nil, "body of %d bytes is over the limit of %d", len(body), maxBytes)
	}
	if err := checkContentType(contentType); err != nil {
		return Message{}, err
	}
	var top jsontext.Value
	if err := json.Unmarshal(body, &top); err != nil {
		return Message{}, newError(CodeParseError, autherr.ErrMalformed, nil, "parse error: %v", err)
	}
	var names memberNames
	switch top.Kind() {
	case '{':
		c, perr := parseOne(top, &names)
		if perr != nil {
			return Message{}, perr
		}
		return Message{Calls: []Call{c}}, nil
	case '[':
		var elems []jsontext.Value
		if err := json.Unmarshal(top, &elems); err != nil {
			return Message{}, newError(CodeParseError, autherr.ErrMalformed, nil, "parse error: %v", err)
		}
		if len(elems) == 0 {
			return Message{}, newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "empty batch")
		}
		if len(elems) > MaxBatch {
			return Message{}, newError(CodeInvalidRequest, autherr.ErrTooLarge, nil, "batch of %d messages is over the limit of %d", len(elems), MaxBatch)
		}
		calls := make([]Call, 0, len(elems))
		for i, el := range elems {
			c, perr := parseOne(el, &names)
			if perr != nil {
				perr.Msg = fmt.Sprintf("batch element %d: %s", i, perr.Msg)
				return Message{}, perr
			}
			calls = append(calls, c)
		}
		return Message{Calls: calls, Batch: true}, nil
	}
	return Message{}, newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "body is a JSON %v, not a request object or batch", top.Kind())
}

// wire is a JSON-RPC message with every member kept raw, so that absent, null and wrongly typed members can each
// be told apart and reported precisely.
type wire struct {
	JSONRPC jsontext.Value `json:"jsonrpc"`
	ID      jsontext.Value `json:"id"`
	Method  jsontext.Value `json:"method"`
	Params  jsontext.Value `json:"params"`
	Result  jsontext.Value `json:"result"`
	Error   jsontext.Value `json:"error"`
}

// parseOne reads one message. names is scratch space for member names, reused across the messages of a body.
func parseOne(v jsontext.Value, names *memberNames) (Call, *Error) {
	if v.Kind() != '{' {
		return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "message is a JSON %v, not an object", v.Kind())
	}
	var w wire
	if err := json.Unmarshal(v, &w); err != nil {
		return Call{}, newError(CodeParseError, autherr.ErrMalformed, nil, "parse error: %v", err)
	}
	// Before the id is read: with "id" and "ID" both present the id itself is ambiguous.
	if err := names.check(v); err != nil {
		return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "%v", err)
	}
	// The id first, so that every later error can be answered to the right id.
	var id jsontext.Value
	if w.ID != nil {
		if k := w.ID.Kind(); k != '"' && k != '0' {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "id is a JSON %v; it must be a string or a number", k)
		}
		id = bytes.Clone(w.ID)
	}
	var version string
	if w.JSONRPC == nil || json.Unmarshal(w.JSONRPC, &version) != nil || version != "2.0" {
		return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, `jsonrpc member must be "2.0"`)
	}

	if w.Method == nil {
		if w.Result == nil && w.Error == nil {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "missing method")
		}
		if w.Result != nil && w.Error != nil {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "response has both result and error")
		}
		if id == nil {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "response without id")
		}
		if w.Params != nil {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "response with params")
		}
		return Call{Kind: KindResponse, ID: stdjson.RawMessage(id)}, nil
	}
	if w.Result != nil || w.Error != nil {
		return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "request has a result or error member")
	}
	var method string
	if json.Unmarshal(w.Method, &method) != nil || method == "" {
		return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "method must be a non-empty string")
	}
	if w.Params != nil {
		if k := w.Params.Kind(); k != '{' && k != '[' {
			return Call{}, newError(CodeInvalidRequest, autherr.ErrMalformed, id, "params is a JSON %v; it must be an object or an array", k)
		}
	}
	c := Call{Kind: KindRequest, ID: stdjson.RawMessage(id), Method: method}
	if id == nil {
		c.Kind = KindNotification
	}
	if err := c.readTarget(w.Params, names); err != nil {
		err.ID = c.ID
		return Call{}, err
	}
	return c, nil
}

// targetParams are the params members that name what a call acts on.
type targetParams struct {
	Name      jsontext.Value            `json:"name"`
	URI       jsontext.Value            `json:"uri"`
	Arguments map[string]jsontext.Value `json:"arguments"`
	Ref       jsontext.Value            `json:"ref"`
}

// refParams is the ref object of completion/complete.
type refParams struct {
	Type jsontext.Value `json:"type"`
	Name jsontext.Value `json:"name"`
	URI  jsontext.Value `json:"uri"`
}

// readTarget fills Target, Name and Args for the methods that act on something inside the server. Those methods
// must name it: a tools/call the sidecar cannot attribute to a tool is refused, not passed.
func (c *Call) readTarget(params jsontext.Value, names *memberNames) *Error {
	var field string
	switch c.Method {
	case "tools/call":
		c.Target, field = TargetTool, "name"
	case "prompts/get":
		c.Target, field = TargetPrompt, "name"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		c.Target, field = TargetResource, "uri"
	case "completion/complete":
		field = "ref"
	default:
		return nil
	}
	if params.Kind() != '{' {
		return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s needs a params object with %s", c.Method, field)
	}
	var p targetParams
	if err := json.Unmarshal(params, &p); err != nil {
		return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s params: %v", c.Method, err)
	}
	if err := names.check(params); err != nil {
		return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s params: %v", c.Method, err)
	}
	*names = slices.AppendSeq((*names)[:0], maps.Keys(p.Arguments))
	if err := caseVariants(*names); err != nil {
		return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s params.arguments: %v", c.Method, err)
	}
	var ok bool
	switch field {
	case "name":
		c.Name, ok = nonEmptyString(p.Name)
	case "uri":
		c.Name, ok = nonEmptyString(p.URI)
	case "ref":
		if p.Ref.Kind() == '{' {
			var ref refParams
			if err := json.Unmarshal(p.Ref, &ref); err != nil {
				return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s params.ref: %v", c.Method, err)
			}
			if err := names.check(p.Ref); err != nil {
				return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s params.ref: %v", c.Method, err)
			}
			switch kind, _ := nonEmptyString(ref.Type); kind {
			case "ref/prompt":
				c.Target = TargetPrompt
				c.Name, ok = nonEmptyString(ref.Name)
			case "ref/resource":
				c.Target = TargetResource
				c.Name, ok = nonEmptyString(ref.URI)
			}
		}
	}
	if !ok {
		return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s without a non-empty params.%s", c.Method, field)
	}
	if c.Target == TargetResource {
		if err := checkResourceURI(c.Name); err != nil {
			return newError(CodeInvalidParams, autherr.ErrMalformed, nil, "%s: %v", c.Method, err)
		}
	}
	if c.Method == "tools/call" || c.Method == "prompts/get" {
		c.Args = scalarArgs(p.Arguments)
	}
	return nil
}

// checkResourceURI refuses a resource URI with dot segments, plain or percent-encoded, or a backslash. Policies
// match URIs as written ("file:///public/*"), while a server resolves "file:///public/../private/a.txt" (RFC 3986
// remove_dot_segments, or path.Clean before opening) to a file outside what policy allowed.
func checkResourceURI(uri string) error {
	u, err := url.Parse(uri)
	if err != nil {
		return fmt.Errorf("resource URI %q does not parse: %v", uri, err)
	}
	p := u.Path
	if p == "" {
		p = u.Opaque
	}
	if strings.IndexByte(p, '\\') >= 0 {
		return fmt.Errorf("resource URI %q has a backslash in its path", uri)
	}
	if urlpath.HasDotSegment(p) {
		return fmt.Errorf("resource URI %q has a . or .. segment", uri)
	}
	return nil
}

func nonEmptyString(v jsontext.Value) (string, bool) {
	var s string
	if v == nil || json.Unmarshal(v, &s) != nil || s == "" {
		return "", false
	}
	return s, true
}

func scalarArgs(in map[string]jsontext.Value) map[string]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		switch v.Kind() {
		case '"':
			var s string
			if json.Unmarshal(v, &s) == nil {
				out[k] = s
			}
		case '0', 't', 'f':
			out[k] = string(v)
		}
	}
	return out
}

// checkContentType accepts application/json with no charset or charset utf-8. A server that honours another
// declared charset (Node's body-parser decodes utf-7, for one) would read different text from the same bytes.
// RFC 2231 forms (charset*=, charset*0=) are refused outright: mime.ParseMediaType lets them override a plain
// charset parameter, while other parsers ignore them, so the two would disagree on the charset.
func checkContentType(contentType string) *Error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "content type %q is not application/json", contentType)
	}
	if strings.Contains(strings.ToLower(contentType), "charset*") {
		return newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "content type %q gives its charset in RFC 2231 form", contentType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return newError(CodeInvalidRequest, autherr.ErrMalformed, nil, "content type %q has charset %q; only utf-8 is accepted", contentType, cs)
	}
	return nil
}

// memberNames reads the member names of one JSON object, unescaped, skipping the values.
type memberNames []string

// check refuses an object with two member names that are equal under Unicode simple case folding ("method"
// and "Method", "params" and "paramſ"). Go servers decoding with encoding/json match names that way and take
// the last match, so the sidecar and the server would read different members. obj must be a valid JSON object
// (already checked by the caller's Unmarshal).
func (m *memberNames) check(obj jsontext.Value) error {
	// Exact duplicates were refused by the caller's Unmarshal; not tracking them again saves the decoder work.
	if err := json.Unmarshal(obj, m, jsontext.AllowDuplicateNames(true)); err != nil {
		return err
	}
	return caseVariants(*m)
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (m *memberNames) UnmarshalJSONFrom(d *jsontext.Decoder) error {
	*m = (*m)[:0]
	tok, err := d.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != '{' {
		return fmt.Errorf("a JSON %v is not an object", tok.Kind())
	}
	for d.PeekKind() == '"' {
		name, err := d.ReadToken()
		if err != nil {
			return err
		}
		*m = append(*m, name.String())
		if err := d.SkipValue(); err != nil {
			return err
		}
	}
	_, err = d.ReadToken()
	return err
}

// pairwiseMax is the largest object whose names are compared pairwise: cheaper than a map for the few members
// JSON-RPC objects have, while larger ones (tool arguments) stay linear.
const pairwiseMax = 16

// caseVariants reports the first two of names that differ only in case. Exact duplicates are left to the JSON
// decoder, which refuses them first.
func caseVariants(names []string) error {
	if len(names) <= pairwiseMax {
		for i, a := range names {
			for _, b := range names[:i] {
				if strings.EqualFold(a, b) {
					return fmt.Errorf("member names %q and %q differ only in case", b, a)
				}
			}
		}
		return nil
	}
	seen := make(map[string]string, len(names))
	for _, name := range names {
		key := foldKey(name)
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("member names %q and %q differ only in case", prev, name)
		}
		seen[key] = name
	}
	return nil
}

// foldKey maps name to a key that is equal for two names exactly when strings.EqualFold says they are: every
// rune is replaced by the smallest rune of its simple case-folding orbit.
func foldKey(name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= utf8.RuneSelf || 'a' <= c && c <= 'z' {
			ascii = false
			break
		}
	}
	if ascii {
		return name
	}
	out := make([]byte, 0, len(name))
	for _, r := range name {
		out = utf8.AppendRune(out, foldRune(r))
	}
	return string(out)
}

func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'a' <= r && r <= 'z' {
			r -= 'a' - 'A'
		}
		return r
	}
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}
