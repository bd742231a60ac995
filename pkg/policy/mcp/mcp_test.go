package mcp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
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
		{"not json", ct, `{"jsonrpc":"2.0",`, 0, CodeParseError, ErrMalformed, "null", "parse error"},
		{"trailing garbage", ct, `{"jsonrpc":"2.0","id":1,"method":"ping"} x`, 0, CodeParseError, ErrMalformed, "null", "parse error"},
		{"duplicate member", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"evil"}}`, 0, CodeParseError, ErrMalformed, "null", "duplicate"},
		{"duplicate top-level member", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`, 0, CodeParseError, ErrMalformed, "null", "duplicate"},
		{"invalid utf-8", ct, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"a\xff\"}}", 0, CodeParseError, ErrMalformed, "null", "parse error"},
		{"oversized", ct, big, 1024, CodeInvalidRequest, ErrTooLarge, "null", "over the limit"},
		{"wrong content type", "text/plain", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "null", "content type"},
		{"no content type", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "null", "content type"},
		{"scalar body", ct, `"ping"`, 0, CodeInvalidRequest, ErrMalformed, "null", "not a request object"},
		{"empty batch", ct, `[]`, 0, CodeInvalidRequest, ErrMalformed, "null", "empty batch"},
		{"batch too long", ct, longBatch.String(), 0, CodeInvalidRequest, ErrTooLarge, "null", "over the limit"},
		{"batch element not object", ct, `[{"jsonrpc":"2.0","id":1,"method":"ping"},5]`, 0, CodeInvalidRequest, ErrMalformed, "null", "batch element 1"},
		{"wrong version", ct, `{"jsonrpc":"1.0","id":1,"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "1", "jsonrpc"},
		{"no version", ct, `{"id":1,"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "1", "jsonrpc"},
		{"missing method", ct, `{"jsonrpc":"2.0","id":1}`, 0, CodeInvalidRequest, ErrMalformed, "1", "missing method"},
		{"case-variant method", ct, `{"jsonrpc":"2.0","id":1,"Method":"tools/call"}`, 0, CodeInvalidRequest, ErrMalformed, "1", "missing method"},
		{"empty method", ct, `{"jsonrpc":"2.0","id":1,"method":""}`, 0, CodeInvalidRequest, ErrMalformed, "1", "method"},
		{"numeric method", ct, `{"jsonrpc":"2.0","id":1,"method":5}`, 0, CodeInvalidRequest, ErrMalformed, "1", "method"},
		{"object id", ct, `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "null", "id is"},
		{"null id", ct, `{"jsonrpc":"2.0","id":null,"method":"ping"}`, 0, CodeInvalidRequest, ErrMalformed, "null", "id is"},
		{"scalar params", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}`, 0, CodeInvalidRequest, ErrMalformed, "1", "params"},
		{"request with result", ct, `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, 0, CodeInvalidRequest, ErrMalformed, "1", "result"},
		{"response with both", ct, `{"jsonrpc":"2.0","id":1,"result":{},"error":{}}`, 0, CodeInvalidRequest, ErrMalformed, "1", "both"},
		{"response without id", ct, `{"jsonrpc":"2.0","result":{}}`, 0, CodeInvalidRequest, ErrMalformed, "null", "without id"},
		{"tools/call without params", ct, `{"jsonrpc":"2.0","id":"x","method":"tools/call"}`, 0, CodeInvalidParams, ErrMalformed, `"x"`, "params"},
		{"tools/call without name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.name"},
		{"tools/call empty name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":""}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.name"},
		{"tools/call numeric name", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.name"},
		{"tools/call notification without name", ct, `{"jsonrpc":"2.0","method":"tools/call","params":{}}`, 0, CodeInvalidParams, ErrMalformed, "null", "params.name"},
		{"tools/call arguments not object", ct, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":"x"}}`, 0, CodeInvalidParams, ErrMalformed, "1", "tools/call params"},
		{"resources/read without uri", ct, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"x"}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.uri"},
		{"prompts/get without name", ct, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.name"},
		{"completion with unknown ref", ct, `{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/other","name":"x"}}}`, 0, CodeInvalidParams, ErrMalformed, "1", "params.ref"},
		{"batch with one malformed call", ct, `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}]`, 0, CodeInvalidParams, ErrMalformed, "2", "batch element 1"},
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
