package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

const ct = "application/json"

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		ct    string
		body  string
		batch bool
		want  []Call
	}{
		{
			name: "tools/call",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"shoes","limit":5,"exact":true,"filter":{"a":1},"tags":["x"],"none":null}}}`,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/call", Target: TargetTool, Name: "search",
				Args: map[string]string{"q": "shoes", "limit": "5", "exact": "true"}}},
		},
		{
			name: "charset parameter and string id",
			ct:   "application/json; charset=utf-8",
			body: ` {"jsonrpc":"2.0","id":"a-1","method":"resources/read","params":{"uri":"file:///etc/motd"}} `,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`"a-1"`), Method: "resources/read", Target: TargetResource, Name: "file:///etc/motd"}},
		},
		{
			name: "prompts/get",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"review","arguments":{"lang":"go"}}}`,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`2`), Method: "prompts/get", Target: TargetPrompt, Name: "review", Args: map[string]string{"lang": "go"}}},
		},
		{
			name: "completion of a prompt argument",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"review"},"argument":{"name":"lang","value":"g"}}}`,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`3`), Method: "completion/complete", Target: TargetPrompt, Name: "review"}},
		},
		{
			name: "completion of a resource template",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{path}"}}}`,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`4`), Method: "completion/complete", Target: TargetResource, Name: "file:///{path}"}},
		},
		{
			name: "notification",
			ct:   ct,
			body: `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
			want: []Call{{Kind: KindNotification, Method: "notifications/initialized"}},
		},
		{
			name: "response to a server request",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":"s-9","result":{"roots":[]}}`,
			want: []Call{{Kind: KindResponse, ID: json.RawMessage(`"s-9"`)}},
		},
		{
			name: "error response",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"user rejected"}}`,
			want: []Call{{Kind: KindResponse, ID: json.RawMessage(`7`)}},
		},
		{
			name:  "batch keeps order",
			ct:    ct,
			body:  `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`,
			batch: true,
			want: []Call{
				{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "tools/list"},
				{Kind: KindRequest, ID: json.RawMessage(`2`), Method: "tools/call", Target: TargetTool, Name: "a"},
				{Kind: KindNotification, Method: "notifications/cancelled"},
			},
		},
		{
			name: "unknown members are ignored",
			ct:   ct,
			body: `{"jsonrpc":"2.0","id":1,"method":"ping","_meta":{"x":1},"params":{}}`,
			want: []Call{{Kind: KindRequest, ID: json.RawMessage(`1`), Method: "ping"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Parse(tt.ct, []byte(tt.body), 0)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if msg.Batch != tt.batch {
				t.Errorf("Batch = %v, want %v", msg.Batch, tt.batch)
			}
			if !reflect.DeepEqual(msg.Calls, tt.want) {
				t.Errorf("Calls =\n%+v\nwant\n%+v", msg.Calls, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	big := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 2000) + `"}}`
	var longBatch strings.Builder
	longBatch.WriteString("[")
	for i := range MaxBatch + 1 {
		if i > 0 {
			longBatch.WriteString(",")
		}
		longBatch.WriteString(`{"jsonrpc":"2.0","method":"ping","id":1}`)
	}
	longBatch.WriteString("]")

	tests := []struct {
		name   string
		ct     string
		body   string
		max    int
		code   int
		reason error
		id     string // raw JSON id expected in the error answer
		msg    string // substring of the message
	}{
		{"not json", ct, `{"jsonrpc":"2.0",`, 0, CodeParseError, autherr.ErrMalformed, "null", "parse error"},
		{"trailing garbage", ct, `{"jsonrpc":"2.0","id":1,"method":"ping"} x`, 0, CodeParseError, autherr.ErrMalformed, "null", "parse error"},
		{"duplicate member", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"evil"}}`, 0, CodeParseError, autherr.ErrMalformed, "null", "duplicate"},
		{"duplicate top-level member", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, 0, CodeParseError, autherr.ErrMalformed, "null", "duplicate"},
		{"invalid utf-8", ct, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", 0, CodeParseError, autherr.ErrMalformed, "null", "parse error"},
		{"oversized", ct, big, 1024, CodeInvalidRequest, autherr.ErrTooLarge, "null", "over the limit"},
		{"wrong content type", "text/plain", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "content type"},
		// A server resolves dot segments (RFC 3986, or path.Clean before opening) while policy matches the URI
		// as written: "file:///public/*" must not admit "file:///public/../private/a.txt".
		{"resource URI with ..", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/../private/a.txt"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", ". or .. segment"},
		{"resource URI with %2e%2e", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/%2e%2e/private/a.txt"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", ". or .. segment"},
		{"resource URI with ./..", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///public/./../private/a.txt"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", ". or .. segment"},
		{"resource URI with ..;", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"https://files.example/public/..;/private"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", ". or .. segment"},
		{"resource URI with a backslash", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public\\..\\private"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "backslash"},
		{"completion ref URI with ..", ct, `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///public/../{name}"}}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", ". or .. segment"},
		{"no content type", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "content type"},
		{"scalar body", ct, `"ping"`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "not a request object"},
		{"empty batch", ct, `[]`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "empty batch"},
		{"batch too long", ct, longBatch.String(), 0, CodeInvalidRequest, autherr.ErrTooLarge, "null", "over the limit"},
		{"batch element not object", ct, `[{"jsonrpc":"2.0","id":1,"method":"ping"},5]`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "batch element 1"},
		{"wrong version", ct, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "jsonrpc"},
		{"no version", ct, `{"id":1,"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "jsonrpc"},
		{"missing method", ct, `{"jsonrpc":"2.0","id":1}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "missing method"},
		{"case-variant method", ct, `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "missing method"},
		{"empty method", ct, `{"jsonrpc":"2.0","id":1,"method":""}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "method"},
		{"numeric method", ct, `{"jsonrpc":"2.0","id":1,"method":5}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "method"},
		{"object id", ct, `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "id is"},
		{"null id", ct, `{"jsonrpc":"2.0","id":null,"method":"ping"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "id is"},
		{"scalar params", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "params"},
		{"request with result", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "result"},
		{"response with both", ct, `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "1", "both"},
		{"response without id", ct, `{"jsonrpc":"2.0","result":{}}`, 0, CodeInvalidRequest, autherr.ErrMalformed, "null", "without id"},
		{"tools/call without params", ct, `{"jsonrpc":"2.0","id":"x","method":"tools/call"}`, 0, CodeInvalidParams, autherr.ErrMalformed, `"x"`, "params"},
		{"tools/call without name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.name"},
		{"tools/call empty name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.name"},
		{"tools/call numeric name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.name"},
		{"tools/call notification without name", ct, `{"jsonrpc":"2.0","method":"tools/call","params":{}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "null", "params.name"},
		{"tools/call arguments not object", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":"x"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "tools/call params"},
		{"resources/read without uri", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.uri"},
		{"prompts/get without name", ct, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.name"},
		{"completion with unknown ref", ct, `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","name":"x"}}}`, 0, CodeInvalidParams, autherr.ErrMalformed, "1", "params.ref"},
		{"batch with one malformed call", ct, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}]`, 0, CodeInvalidParams, autherr.ErrMalformed, "2", "batch element 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Parse(tt.ct, []byte(tt.body), tt.max)
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", msg)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if e.Code != tt.code {
				t.Errorf("Code = %d, want %d (%v)", e.Code, tt.code, err)
			}
			if !errors.Is(err, tt.reason) {
				t.Errorf("error %v does not wrap %v", err, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
			var resp struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(e.Response(), &resp); err != nil {
				t.Fatalf("Response %s is not JSON: %v", e.Response(), err)
			}
			if resp.JSONRPC != "2.0" || string(resp.ID) != tt.id || resp.Error.Code != tt.code || resp.Error.Message == "" {
				t.Errorf("Response = %s, want id %s and code %d", e.Response(), tt.id, tt.code)
			}
		})
	}
}

// goServerReading is what an MCP server written in Go with encoding/json reads from body, decoding into structs
// as mark3labs/mcp-go does: member names match under Unicode simple case folding and the last match wins.
func goServerReading(t *testing.T, body string) (method, name string, args map[string]string) {
	t.Helper()
	var req struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Fatalf("encoding/json cannot read %s: %v", body, err)
	}
	var p struct {
		Name      string            `json:"name"`
		Arguments map[string]string `json:"arguments"`
	}
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &p); err != nil {
			t.Fatalf("encoding/json cannot read params of %s: %v", body, err)
		}
	}
	return req.Method, p.Name, p.Arguments
}

// TestCaseVariantMembersRefused: two member names that differ only in case (under Unicode simple folding) are
// refused in every object Parse reads, because a Go server would read the last of them while Parse reads the
// exact one, and policy would decide a different call from the one the tool runs.
func TestCaseVariantMembersRefused(t *testing.T) {
	// Over pairwiseMax members, so that names are compared through their fold keys.
	var many strings.Builder
	for i := range 2 * pairwiseMax {
		fmt.Fprintf(&many, `"arg%d":"x",`, i)
	}
	tests := []struct {
		name string
		body string
		code int
		id   string // raw JSON id expected in the error answer
		keys [2]string
	}{
		{"Method beside method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"delete_order"}}`, CodeInvalidRequest, "null", [2]string{"method", "Method"}},
		{"Method before method", `{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"tools/list","params":{"name":"delete_order"}}`, CodeInvalidRequest, "null", [2]string{"Method", "method"}},
		{"Params beside params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"Params":{"name":"delete_order"}}`, CodeInvalidRequest, "null", [2]string{"params", "Params"}},
		{"Unicode fold paramſ beside params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"paramſ":{"name":"delete_order"}}`, CodeInvalidRequest, "null", [2]string{"params", "paramſ"}},
		{"escaped Params beside params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"},"\u0050arams":{"name":"delete_order"}}`, CodeInvalidRequest, "null", [2]string{"params", "Params"}},
		{"ID beside id", `{"jsonrpc":"2.0","id":1,"ID":2,"method":"ping"}`, CodeInvalidRequest, "null", [2]string{"id", "ID"}},
		{"Result beside result", `{"jsonrpc":"2.0","id":1,"result":{},"Result":{}}`, CodeInvalidRequest, "null", [2]string{"result", "Result"}},
		{"variants of an unknown member", `{"jsonrpc":"2.0","id":1,"method":"ping","_meta":{},"_Meta":{}}`, CodeInvalidRequest, "null", [2]string{"_meta", "_Meta"}},
		{"Name beside name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_order"}}`, CodeInvalidParams, "1", [2]string{"name", "Name"}},
		{"Kelvin sign", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"k":"1","\u212a":"2"}}}`, CodeInvalidParams, "1", [2]string{"k", "\u212a"}},
		{"Arguments beside arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_order","arguments":{"currency":"EUR"},"Arguments":{"currency":"USD"}}}`, CodeInvalidParams, "1", [2]string{"arguments", "Arguments"}},
		{"Currency beside currency", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_order","arguments":{"currency":"EUR","Currency":"USD"}}}`, CodeInvalidParams, "1", [2]string{"currency", "Currency"}},
		{"prompt argument variants", `{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":"review","arguments":{"LANG":"go","lang":"sh"}}}`, CodeInvalidParams, `"p"`, [2]string{"lang", "LANG"}},
		{"URI beside uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///public/a","URI":"file:///private/a"}}`, CodeInvalidParams, "1", [2]string{"uri", "URI"}},
		{"Ref beside ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a"},"Ref":{"type":"ref/prompt","name":"b"}}}`, CodeInvalidParams, "1", [2]string{"ref", "Ref"}},
		{"Name beside name in ref", `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a","NAME":"b"}}}`, CodeInvalidParams, "1", [2]string{"name", "NAME"}},
		{"many arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{` + many.String() + `"ARGſ":"y","args":"z"}}}`, CodeInvalidParams, "1", [2]string{"args", "ARGſ"}},
		{"in a batch element", `[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"a","nAme":"b"}}]`, CodeInvalidParams, "2", [2]string{"name", "nAme"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := Parse(ct, []byte(tt.body), 0)
			if err == nil {
				m, n, a := goServerReading(t, tt.body)
				t.Fatalf("Parse accepted it: policy decides %+v, a Go (encoding/json) server runs method %q name %q args %v", msg.Calls, m, n, a)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if !errors.Is(err, autherr.ErrMalformed) || e.Code != tt.code {
				t.Errorf("error %v (code %d), want %v with code %d", err, e.Code, autherr.ErrMalformed, tt.code)
			}
			for _, k := range tt.keys {
				if !strings.Contains(err.Error(), strconv.Quote(k)) {
					t.Errorf("error %q does not name member %q", err, k)
				}
			}
			var resp struct {
				ID json.RawMessage `json:"id"`
			}
			if err := json.Unmarshal(e.Response(), &resp); err != nil || string(resp.ID) != tt.id {
				t.Errorf("Response = %s, want id %s", e.Response(), tt.id)
			}
		})
	}
}

// TestCaseDistinctMembersAccepted: names that a Go server keeps apart are not refused, and Parse reads what such
// a server reads.
func TestCaseDistinctMembersAccepted(t *testing.T) {
	var many strings.Builder
	for i := range 2 * pairwiseMax {
		fmt.Fprintf(&many, `"arg%d":"x","ARG_%d":"y",`, i, i)
	}
	for _, body := range []string{
		// U+0130 lowercases to "i" but has no simple case folding: encoding/json does not match it with "id".
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"id":"1","\u0130d":"2"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"max_len":"1","maxlen":"2","max-len":"3"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","names":"x","arguments":{"a":"1","b":"2"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{` + many.String() + `"a":"1"}}}`,
	} {
		msg, err := Parse(ct, []byte(body), 0)
		if err != nil {
			t.Fatalf("Parse(%s): %v", body, err)
		}
		c := msg.Calls[0]
		m, n, a := goServerReading(t, body)
		if c.Method != m || c.Name != n || !reflect.DeepEqual(c.Args, a) {
			t.Errorf("Parse(%s) reads %q %q %v, a Go server %q %q %v", body, c.Method, c.Name, c.Args, m, n, a)
		}
	}
}

// TestCharsetMustBeUTF8: a body is read as UTF-8, so any other declared charset is refused: a server honouring
// it (Node's body-parser decodes utf-7, in which "+AGQ-elete_order" is "delete_order") would run another call.
func TestCharsetMustBeUTF8(t *testing.T) {
	body := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"+AGQ-elete_order"}}`)
	tests := []struct {
		ct     string
		accept bool
	}{
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"application/json; charset=UTF-8", true},
		{`application/json; charset="Utf-8"`, true},
		{"Application/JSON; CHARSET=utf-8", true},
		{"application/json; charset=utf-7", false},
		{"application/json; charset=UTF-7", false},
		{`application/json; charset="utf-7"`, false},
		{"application/json; charset=iso-8859-1", false},
		{"application/json; charset=utf-16le", false},
		{"application/json; charset=utf8", false},
		{"application/json; charset=utf-8; charset=utf-7", false},
		// RFC 2231 forms: mime.ParseMediaType lets charset* override charset, other parsers ignore it.
		{"application/json; charset*=utf-8''utf-8; charset=utf-7", false},
		{"application/json; charset*=utf-8''utf-7", false},
		{"application/json; charset*0=utf-8", false},
	}
	for _, tt := range tests {
		t.Run(tt.ct, func(t *testing.T) {
			msg, err := Parse(tt.ct, body, 0)
			if tt.accept {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse accepted it and reads tool %q as UTF-8", msg.Calls[0].Name)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidRequest || !errors.Is(err, autherr.ErrMalformed) || !strings.Contains(err.Error(), "content type") {
				t.Errorf("error %v, want a content type refusal with code %d wrapping %v", err, CodeInvalidRequest, autherr.ErrMalformed)
			}
		})
	}
}

func TestFoldKey(t *testing.T) {
	names := []string{"", "id", "ID", "Id", "params", "paramſ", "PARAMS", "k", "K", "\u212a", "ß", "ẞ", "ss", "İd", "id", "ı", "I", "σ", "ς", "Σ", "max_len", "maxlen", "\xff", "\ufffd"}
	for _, a := range names {
		for _, b := range names {
			if got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b); got != want {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v, strings.EqualFold says %v", a, b, got, want)
			}
		}
	}
}

func TestJSONRPCError(t *testing.T) {
	tests := []struct {
		id   json.RawMessage
		want string
	}{
		{json.RawMessage(`42`), `{"jsonrpc":"2.0","id":42,"error":{"code":-32001,"message":"forbidden: policy_denied"}}`},
		{json.RawMessage(`"a\"b"`), `{"jsonrpc":"2.0","id":"a\"b","error":{"code":-32001,"message":"forbidden: policy_denied"}}`},
		{nil, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"forbidden: policy_denied"}}`},
		{json.RawMessage(`{"x":1}`), `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"forbidden: policy_denied"}}`},
		{json.RawMessage(`"unterminated`), `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"forbidden: policy_denied"}}`},
	}
	for _, tt := range tests {
		if got := string(JSONRPCError(tt.id, CodeDenied, "forbidden: policy_denied")); got != tt.want {
			t.Errorf("JSONRPCError(%s) = %s, want %s", tt.id, got, tt.want)
		}
	}
}
