package mcp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// FuzzParse: no byte string panics, every refusal is an *Error whose answer is valid JSON-RPC, and every accepted
// call is well-formed enough to authorize.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x","n":1}}}`,
		`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`,
		`{"jsonrpc":"2.0","id":"a","result":{}}`,
		`{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"x"}}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call","params":{"name":"a","arguments":{"k":1,"\u212a":2}}}`,
		`[]`, `{`, `null`, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := Parse("application/json", body, 4096)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			if !errors.Is(err, autherr.ErrMalformed) && !errors.Is(err, autherr.ErrTooLarge) {
				t.Fatalf("error %v wraps no reason", err)
			}
			if !json.Valid(e.Response()) {
				t.Fatalf("Response %q is not JSON", e.Response())
			}
			return
		}
		if len(msg.Calls) == 0 || len(msg.Calls) > MaxBatch {
			t.Fatalf("accepted %d calls", len(msg.Calls))
		}
		for _, c := range msg.Calls {
			switch {
			case c.Kind == KindResponse && (c.Method != "" || c.ID == nil):
				t.Fatalf("bad response call %+v", c)
			case c.Kind != KindResponse && c.Method == "":
				t.Fatalf("call without method %+v", c)
			case c.Kind == KindRequest && c.ID == nil, c.Kind == KindNotification && c.ID != nil:
				t.Fatalf("id does not match kind %+v", c)
			case c.Target != TargetServer && c.Name == "":
				t.Fatalf("targeted call without name %+v", c)
			}
		}
	})
}

// FuzzFoldKey: two names get the same fold key exactly when strings.EqualFold says they are equal, so the map
// lookup that refuses case-variant members agrees with Go's case-insensitive member matching.
func FuzzFoldKey(f *testing.F) {
	for _, p := range [][2]string{{"params", "paramſ"}, {"k", "\u212a"}, {"ß", "ẞ"}, {"İd", "id"}, {"σ", "ς"}, {"\xff", "\ufffd"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b); got != want {
			t.Fatalf("foldKey(%q) == foldKey(%q) is %v, strings.EqualFold says %v", a, b, got, want)
		}
	})
}
