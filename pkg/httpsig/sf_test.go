package httpsig

import (
	"errors"
	"strings"
	"testing"
)

func TestSFDictionaryRoundTrip(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`a=1,    b=2;x=1;y=2,   c=(a   b   c)`, `a=1, b=2;x=1;y=2, c=(a b c)`},
		{`a=1, b=2;x=1;y=2, c=(a   b    c), d`, `a=1, b=2;x=1;y=2, c=(a b c), d`},
		{`sig1=("@method" "@authority");created=1618884473;keyid="test-key-rsa-pss"`,
			`sig1=("@method" "@authority");created=1618884473;keyid="test-key-rsa-pss"`},
		{`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`, `sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`},
		{`a=?0, b, c;foo=bar`, `a=?0, b, c;foo=bar`},
		{`a=1.50, b=-0.1, c=-12`, `a=1.5, b=-0.1, c=-12`},
		{`a="q\"uo\\te"`, `a="q\"uo\\te"`},
		{`a=:YQ:`, `a=:YQ==:`},
		{` a=1 ,	b=2 `, `a=1, b=2`},
		{`a=(), b=();p`, `a=(), b=();p`},
		{`a=tok/en:x*`, `a=tok/en:x*`},
		{`a=1, a=2, b`, `a=2, b`},
		{``, ``},
	}
	for _, tt := range tests {
		d, err := parseSFDictionary(tt.in)
		if err != nil {
			t.Errorf("parse(%q): %v", tt.in, err)
			continue
		}
		got, err := serializeSFDictionary(d.members)
		if err != nil || got != tt.want {
			t.Errorf("serialize(parse(%q)) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestSFDictionaryRejects(t *testing.T) {
	bad := []string{
		`a=1,`, `a=1,,b=2`, `A=1`, `a=(1 2`, `a=(1,2)`, `a="unterminated`, `a="bad\q"`, `a=:not base64!:`,
		`a=:YQ=:`, `a=?2`, `a=1234567890123456`, `a=1.2345`, `a=1234567890123.1`, `a=1.`, `a=-`, `a=@12`,
		`a=%"x"`, "a=\"tab\there\"", `a=1 b=2`, `a=1;`, `a=1;B=2`, `a=é`, `a=:YQ==`, `a=1 ;x`,
	}
	for _, in := range bad {
		if d, err := parseSFDictionary(in); err == nil {
			t.Errorf("parse(%q) = %+v, want error", in, d.members)
		}
	}
}

func TestSFDuplicateKeyFlag(t *testing.T) {
	d, err := parseSFDictionary(`a=1, b=2, a=3`)
	if err != nil || !d.dup || len(d.members) != 2 || d.members[0].val.num != 3 {
		t.Fatalf("got %+v, %v", d, err)
	}
}

func TestSFLimits(t *testing.T) {
	many := strings.Repeat("a, ", sfMaxMembers) + "a"
	if _, err := parseSFList(many); !errors.Is(err, errSFTooLarge) {
		t.Errorf("list of %d members: err = %v", sfMaxMembers+1, err)
	}
	inner := "x=(" + strings.Repeat("1 ", sfMaxInnerItems) + "1)"
	if _, err := parseSFDictionary(inner); !errors.Is(err, errSFTooLarge) {
		t.Errorf("inner list: err = %v", err)
	}
	var ps strings.Builder
	for i := 0; i <= sfMaxParams; i++ {
		ps.WriteString(";p" + strings.Repeat("a", i/26) + string(rune('a'+i%26)))
	}
	if _, err := parseSFItem("1" + ps.String()); !errors.Is(err, errSFTooLarge) {
		t.Errorf("params: err = %v", err)
	}
}

func TestSFListAndItem(t *testing.T) {
	l, err := parseSFList(`:dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:`)
	if err != nil || len(l) != 2 || string(l[1].val.bin) != "of, commas" {
		t.Fatalf("list: %+v, %v", l, err)
	}
	s, err := serializeSFList(l)
	if err != nil || s != `:dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:` {
		t.Fatalf("serialize list = %q, %v", s, err)
	}
	it, err := parseSFItem(` "x";a=1 `)
	if err != nil || it.val.str != "x" || len(it.params) != 1 {
		t.Fatalf("item: %+v, %v", it, err)
	}
	if _, err := parseSFItem(`"x" y`); err == nil {
		t.Fatal("item with trailing garbage parsed")
	}
}

func TestSFSerializeRejectsInvalid(t *testing.T) {
	for _, v := range []bareItem{sfStr("a\nb"), sfTok("1abc"), sfInt(1e15), {}} {
		if _, err := appendBareItem(nil, v); err == nil {
			t.Errorf("appendBareItem(%+v) succeeded", v)
		}
	}
	if _, err := serializeSFDictionary([]member{{key: "Bad", val: sfInt(1)}}); err == nil {
		t.Error("serialized an invalid key")
	}
}
