package httpsig

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// lineFor builds the signature base for one component and returns its single line (without the params line).
func lineFor(t *testing.T, m Message, c Component) (string, error) {
	t.Helper()
	base, err := SignatureBase(m, &SignatureInput{Label: "x", Components: []Component{c}})
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(base), "\n")
	return line, nil
}

func TestFieldComponents(t *testing.T) {
	// RFC 9421 Section 2.1 example fragment, as a server parses it (obs-fold unfolded by net/textproto).
	r := readRequest(t, "GET / HTTP/1.1\r\n"+
		"Host: www.example.com\r\n"+
		"Date: Tue, 20 Apr 2021 02:07:56 GMT\r\n"+
		"X-OWS-Header:   Leading and trailing whitespace.   \r\n"+
		"X-Obs-Fold-Header: Obsolete\r\n    line folding.\r\n"+
		"Cache-Control: max-age=60\r\n"+
		"Cache-Control:    must-revalidate\r\n"+
		"Example-Dict:  a=1,    b=2;x=1;y=2,   c=(a   b   c)\r\n"+
		"X-Empty-Header: \r\n"+
		"Example-Dict2:  a=1, b=2;x=1;y=2, c=(a   b    c), d\r\n"+
		"Accept-Signature:  a=1,    b=2;x=1;y=2,   c=(a   b   c)\r\n"+
		"Example-Header: value, with, lots\r\n"+
		"Example-Header: of, commas\r\n"+
		"Example-Single: value, with, lots, of, commas\r\n"+
		"\r\n")
	m := Message{Request: r}
	tests := []struct {
		c    Component
		want string
	}{
		{Comp("host"), `"host": www.example.com`},
		{Comp("date"), `"date": Tue, 20 Apr 2021 02:07:56 GMT`},
		{Comp("x-ows-header"), `"x-ows-header": Leading and trailing whitespace.`},
		{Comp("x-obs-fold-header"), `"x-obs-fold-header": Obsolete line folding.`},
		{Comp("cache-control"), `"cache-control": max-age=60, must-revalidate`},
		{Comp("example-dict"), `"example-dict": a=1,    b=2;x=1;y=2,   c=(a   b   c)`},
		{Comp("x-empty-header"), `"x-empty-header": `},
		{Comp("accept-signature", "sf"), `"accept-signature";sf: a=1, b=2;x=1;y=2, c=(a b c)`},
		{Component{"example-dict2", []Param{{"key", "a"}}}, `"example-dict2";key="a": 1`},
		{Component{"example-dict2", []Param{{"key", "d"}}}, `"example-dict2";key="d": ?1`},
		{Component{"example-dict2", []Param{{"key", "b"}}}, `"example-dict2";key="b": 2;x=1;y=2`},
		{Component{"example-dict2", []Param{{"key", "c"}}}, `"example-dict2";key="c": (a b c)`},
		{Comp("example-header", "bs"), `"example-header";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:`},
		{Comp("example-single", "bs"), `"example-single";bs: :dmFsdWUsIHdpdGgsIGxvdHMsIG9mLCBjb21tYXM=:`},
	}
	for _, tt := range tests {
		got, err := lineFor(t, m, tt.c)
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.c, got, err, tt.want)
		}
	}
}

func TestDerivedComponents(t *testing.T) {
	post := readRequest(t, "POST /path?param=value HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	postTLS := readRequest(t, "POST /path?param=value HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	postTLS.TLS = &tls.ConnectionState{}
	abs := readRequest(t, "GET https://www.example.com/path?param=value HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	connect := readRequest(t, "CONNECT www.example.com:80 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	options := readRequest(t, "OPTIONS * HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	q1 := readRequest(t, "GET /path?param=value&foo=bar&baz=bat%2Dman HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	q2 := readRequest(t, "POST /path?queryString HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	q3 := readRequest(t, "GET /path HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	qp := readRequest(t, "GET /path?param=value&foo=bar&baz=batman&qux= HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	qp2 := readRequest(t, "GET /parameters?var=this%20is%20a%20big%0Amultiline%20value&"+
		"bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
	ports := readRequest(t, "GET / HTTP/1.1\r\nHost: WWW.Example.COM:443\r\n\r\n")
	ports.TLS = &tls.ConnectionState{}
	port80 := readRequest(t, "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
	port8443 := readRequest(t, "GET / HTTP/1.1\r\nHost: example.com:8443\r\n\r\n")
	client, _ := http.NewRequest(http.MethodPut, "https://Svc.Example:443/a%2Fb?x=1&y", nil)
	resp := &http.Response{StatusCode: 200, Header: http.Header{}}

	qpName := func(n string) Component { return Component{"@query-param", []Param{{"name", n}}} }
	tests := []struct {
		r    *http.Request
		c    Component
		want string
	}{
		{post, Comp("@method"), `"@method": POST`},
		{postTLS, Comp("@target-uri"), `"@target-uri": https://www.example.com/path?param=value`},
		{post, Comp("@authority"), `"@authority": www.example.com`},
		{post, Comp("@scheme"), `"@scheme": http`},
		{postTLS, Comp("@scheme"), `"@scheme": https`},
		{post, Comp("@request-target"), `"@request-target": /path?param=value`},
		{abs, Comp("@request-target"), `"@request-target": https://www.example.com/path?param=value`},
		{abs, Comp("@target-uri"), `"@target-uri": https://www.example.com/path?param=value`},
		{connect, Comp("@request-target"), `"@request-target": www.example.com:80`},
		{options, Comp("@request-target"), `"@request-target": *`},
		{post, Comp("@path"), `"@path": /path`},
		{q1, Comp("@query"), `"@query": ?param=value&foo=bar&baz=bat%2Dman`},
		{q2, Comp("@query"), `"@query": ?queryString`},
		{q3, Comp("@query"), `"@query": ?`},
		{qp, qpName("baz"), `"@query-param";name="baz": batman`},
		{qp, qpName("qux"), `"@query-param";name="qux": `},
		{qp, qpName("param"), `"@query-param";name="param": value`},
		{qp2, qpName("var"), `"@query-param";name="var": this%20is%20a%20big%0Amultiline%20value`},
		{qp2, qpName("bar"), `"@query-param";name="bar": with%20plus%20whitespace`},
		{qp2, qpName("fa%C3%A7ade%22%3A%20"), `"@query-param";name="fa%C3%A7ade%22%3A%20": something`},
		{ports, Comp("@authority"), `"@authority": www.example.com`},
		{port80, Comp("@authority"), `"@authority": [::1]`},
		{port8443, Comp("@authority"), `"@authority": example.com:8443`},
		{client, Comp("@method"), `"@method": PUT`},
		{client, Comp("@authority"), `"@authority": svc.example`},
		{client, Comp("@scheme"), `"@scheme": https`},
		{client, Comp("@path"), `"@path": /a%2Fb`},
		{client, Comp("@request-target"), `"@request-target": /a%2Fb?x=1&y`},
		{client, Comp("@target-uri"), `"@target-uri": https://svc.example/a%2Fb?x=1&y`},
		{client, qpName("y"), `"@query-param";name="y": `},
		{client, Comp("host"), `"host": Svc.Example:443`},
	}
	for _, tt := range tests {
		got, err := lineFor(t, Message{Request: tt.r}, tt.c)
		if err != nil || got != tt.want {
			t.Errorf("%s %s: got %q, %v; want %q", tt.r.Method, tt.c, got, err, tt.want)
		}
	}
	if got, err := lineFor(t, Message{Response: resp}, Comp("@status")); err != nil || got != `"@status": 200` {
		t.Errorf("@status: %q, %v", got, err)
	}
	if got, err := lineFor(t, Message{Request: post, Response: resp}, Comp("@authority", "req")); err != nil ||
		got != `"@authority";req: www.example.com` {
		t.Errorf("@authority;req: %q, %v", got, err)
	}
}

func TestSignatureBaseErrors(t *testing.T) {
	r := readRequest(t, "GET /p?a=1&a=2&b=%FF HTTP/1.1\r\nHost: example.com\r\nExample-Dict: a=1\r\n"+
		"X-Bin: caf\xc3\xa9\r\n\r\n")
	resp := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}}
	req := Message{Request: r}
	tests := []struct {
		name string
		m    Message
		cs   []Component
	}{
		{"duplicate", req, []Component{Comp("@method"), Comp("@method")}},
		{"duplicate reordered params", Message{Request: r, Response: resp},
			[]Component{Comp("content-type", "req", "bs"), Comp("content-type", "bs", "req")}},
		{"unknown derived", req, []Component{Comp("@nope")}},
		{"signature-params", req, []Component{Comp("@signature-params")}},
		{"unknown param", req, []Component{Comp("@method", "foo")}},
		{"req in request", req, []Component{Comp("@method", "req")}},
		{"req without request", Message{Response: resp}, []Component{Comp("@method", "req")}},
		{"status in request", req, []Component{Comp("@status")}},
		{"status with req", Message{Request: r, Response: resp}, []Component{Comp("@status", "req")}},
		{"method on response", Message{Response: resp}, []Component{Comp("@method")}},
		{"missing field", req, []Component{Comp("content-type")}},
		{"missing query param", req, []Component{{"@query-param", []Param{{"name", "zz"}}}}},
		{"repeated query param", req, []Component{{"@query-param", []Param{{"name", "a"}}}}},
		{"query-param without name", req, []Component{Comp("@query-param")}},
		{"name on field", req, []Component{{"example-dict", []Param{{"name", "a"}}}}},
		{"name on other derived", req, []Component{{"@path", []Param{{"name", "a"}}}}},
		{"sf on derived", req, []Component{Comp("@path", "sf")}},
		{"trailer", req, []Component{Comp("example-dict", "tr")}},
		{"bs with sf", req, []Component{Comp("example-dict", "bs", "sf")}},
		{"bs with key", req, []Component{{"example-dict", []Param{{"bs", true}, {"key", "a"}}}}},
		{"missing dict key", req, []Component{{"example-dict", []Param{{"key", "b"}}}}},
		{"key not a string", req, []Component{{"example-dict", []Param{{"key", int64(1)}}}}},
		{"false flag", req, []Component{{"example-dict", []Param{{"sf", false}}}}},
		{"sf on unknown type", req, []Component{Comp("example-dict", "sf")}},
		{"non-ascii field", req, []Component{Comp("x-bin")}},
		{"uppercase name", req, []Component{Comp("Example-Dict")}},
		{"empty name", req, []Component{Comp("")}},
		{"no message", Message{}, []Component{Comp("@method")}},
	}
	for _, tt := range tests {
		_, err := SignatureBase(tt.m, &SignatureInput{Label: "x", Components: tt.cs})
		if !errors.Is(err, autherr.ErrMalformed) {
			t.Errorf("%s: err = %v, want autherr.ErrMalformed", tt.name, err)
		}
	}
	// bs carries what plain values cannot.
	if got, err := lineFor(t, req, Comp("x-bin", "bs")); err != nil || got != `"x-bin";bs: :Y2Fmw6k=:` {
		t.Errorf("bs of non-ASCII: %q, %v", got, err)
	}
	// An invalid percent escape decodes to U+FFFD, re-encoded as UTF-8.
	if got, err := lineFor(t, req, Component{"@query-param", []Param{{"name", "b"}}}); err != nil ||
		got != `"@query-param";name="b": %EF%BF%BD` {
		t.Errorf("invalid UTF-8 query: %q, %v", got, err)
	}
	many := make([]Component, MaxComponents+1)
	for i := range many {
		many[i] = Comp("@method")
	}
	if _, err := SignatureBase(req, &SignatureInput{Components: many}); !errors.Is(err, autherr.ErrTooLarge) {
		t.Errorf("too many components: %v", err)
	}
}

func TestParseSignatureInput(t *testing.T) {
	good := `sig1=("@method" "@query-param";name="a" "x";req);created=1;expires=2;nonce="n";tag="t";custom=?0`
	ins, err := ParseSignatureInput([]string{good, `sig2=()`})
	if err != nil || len(ins) != 2 || ins[0].Label != "sig1" || len(ins[0].Components) != 3 {
		t.Fatalf("got %+v, %v", ins, err)
	}
	if c, _ := ins[0].TimeParam("created"); c.Unix() != 1 {
		t.Errorf("created = %v", c)
	}
	if n, _ := ins[0].StringParam("nonce"); n != "n" {
		t.Errorf("nonce = %q", n)
	}
	if v, _ := ins[0].Param("custom"); v != false {
		t.Errorf("custom = %v", v)
	}
	if got := ins[0].String(); got != strings.TrimPrefix(good, "sig1=") {
		t.Errorf("String() = %q", got)
	}
	bad := map[string]error{
		`sig1="@method"`:                         autherr.ErrMalformed,
		`sig1=(@method)`:                         autherr.ErrMalformed,
		`sig1=("@Method")`:                       autherr.ErrMalformed,
		`sig1=("a b")`:                           autherr.ErrMalformed,
		`sig1=("@signature-params")`:             autherr.ErrMalformed,
		`sig1=();created="1"`:                    autherr.ErrMalformed,
		`sig1=();expires=1.5`:                    autherr.ErrMalformed,
		`sig1=();nonce=1`:                        autherr.ErrMalformed,
		`sig1=();keyid=k`:                        autherr.ErrMalformed,
		`sig1=(), sig1=()`:                       autherr.ErrMalformed,
		`sig1=(`:                                 autherr.ErrMalformed,
		strings.Repeat("a", MaxFieldBytes+1):     autherr.ErrTooLarge,
		"s=(" + strings.Repeat(`"a" `, 65) + ")": autherr.ErrTooLarge,
	}
	var sb strings.Builder
	for i := 0; i <= MaxSignatures; i++ {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("s" + strings.Repeat("x", i) + "=()")
	}
	bad[sb.String()] = autherr.ErrTooLarge
	for in, want := range bad {
		if _, err := ParseSignatureInput([]string{in}); !errors.Is(err, want) {
			t.Errorf("ParseSignatureInput(%.60q) = %v, want %v", in, err, want)
		}
	}
}

func TestParseSignature(t *testing.T) {
	sigs, err := ParseSignature([]string{`a=:AAEC:`, `b=:AwQ=:`})
	if err != nil || len(sigs) != 2 || sigs["a"][2] != 2 {
		t.Fatalf("got %v, %v", sigs, err)
	}
	for _, in := range []string{`a="AAEC"`, `a=(:AAEC:)`, `a=:AAEC:, a=:AAEC:`, `a=:AA`, `a`} {
		if _, err := ParseSignature([]string{in}); !errors.Is(err, autherr.ErrMalformed) {
			t.Errorf("ParseSignature(%q) = %v", in, err)
		}
	}
}

func TestSignaturesLabelsMustMatch(t *testing.T) {
	for _, h := range []http.Header{
		{"Signature-Input": {`a=()`}},
		{"Signature": {`a=:AA==:`}},
		{"Signature-Input": {`a=()`}, "Signature": {`b=:AA==:`}},
		{"Signature-Input": {`a=(), b=()`}, "Signature": {`a=:AA==:`}},
	} {
		if _, _, err := Signatures(h); !errors.Is(err, autherr.ErrMalformed) {
			t.Errorf("Signatures(%v) = %v", h, err)
		}
	}
	if ins, sigs, err := Signatures(http.Header{}); ins != nil || sigs != nil || err != nil {
		t.Errorf("no fields: %v %v %v", ins, sigs, err)
	}
}

func TestCoreSignVerify(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(nil)
	r, _ := http.NewRequest(http.MethodGet, "https://example.com/x", nil)
	in := &SignatureInput{Label: "sig", Components: []Component{Comp("@method"), Comp("@path")},
		Params: []Param{{"created", int64(1)}, {"alg", "ed25519"}}}
	m := Message{Request: r}
	if err := Sign(m, in, AlgEd25519, priv); err != nil {
		t.Fatal(err)
	}
	if err := Sign(m, in, AlgEd25519, priv); err == nil {
		t.Error("signed twice under one label")
	}
	if _, err := Verify(m, "sig", AlgEd25519, priv.Public()); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(m, "other", AlgEd25519, priv.Public()); !errors.Is(err, autherr.ErrMissing) {
		t.Errorf("unknown label: %v", err)
	}
	if _, err := Verify(m, "sig", AlgECDSAP256SHA256, priv.Public()); !errors.Is(err, autherr.ErrUnsupportedAlg) {
		t.Errorf("alg param mismatch: %v", err)
	}
	r.URL.Path = "/y"
	if _, err := Verify(m, "sig", AlgEd25519, priv.Public()); !errors.Is(err, autherr.ErrBadSignature) {
		t.Errorf("changed path: %v", err)
	}
	if err := Sign(m, &SignatureInput{Label: "Bad"}, AlgEd25519, priv); err == nil {
		t.Error("signed with an invalid label")
	}
}
