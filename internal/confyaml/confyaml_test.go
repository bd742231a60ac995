package confyaml

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const doc = `name: demo
routes:
  - host: a.example
    upstream: http://127.0.0.1:1
  - host: b.example
    upstream:
      url: nowhere
limits: {maxConns: 0}
`

type config struct {
	Name   string `yaml:"name"`
	Routes []struct {
		Host     string `yaml:"host"`
		Upstream any    `yaml:"upstream"`
	} `yaml:"routes"`
	Limits struct {
		MaxConns int `yaml:"maxConns"`
	} `yaml:"limits"`
}

func TestLines(t *testing.T) {
	var cfg config
	root, err := Decode([]byte(doc), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		line  int
	}{
		{"name", 1},
		{"routes", 2},
		{"routes[0].host", 3},
		{"routes[1].upstream", 6},
		{"routes[1].upstream.url", 7},
		{"routes[7].host", 2},        // no such element: its list
		{"limits.maxConns", 8},       // flow style: the same line
		{"limits.missing.deeper", 8}, // nearest existing parent
		{"nothing", 1},               // the document
	}
	var p Problems
	for _, tt := range tests {
		p.Add(tt.field, "wrong")
	}
	err = Lines(root, p.Err("test config"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	got := map[string]int{}
	for _, fe := range ve.Errors {
		got[fe.Field] = fe.Line
	}
	for _, tt := range tests {
		if got[tt.field] != tt.line {
			t.Errorf("%s: line %d, want %d", tt.field, got[tt.field], tt.line)
		}
	}
	for i := 1; i < len(ve.Errors); i++ {
		if ve.Errors[i].Line < ve.Errors[i-1].Line {
			t.Errorf("problems not in file order: %v", err)
		}
	}
	if !strings.HasPrefix(err.Error(), "invalid test config:\n  line 1: ") {
		t.Errorf("message: %q", err)
	}
}

func TestNoProblemsIsNil(t *testing.T) {
	var p Problems
	if err := p.Err("x"); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeIsStrict(t *testing.T) {
	var cfg config
	_, err := Decode([]byte("name: x\ncolour: red\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "line 2: field colour not found") {
		t.Fatalf("got %v", err)
	}
	if _, err := Decode([]byte("name: [unclosed\n"), &cfg); err == nil {
		t.Fatal("malformed YAML decoded")
	}
	// An empty file is an empty config: validation then says what is missing.
	if _, err := Decode(nil, &cfg); err != nil {
		t.Fatal(err)
	}
}

func TestReadFileCapsSize(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.yaml"), filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(small, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, MaxBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(small); err != nil || string(data) != doc {
		t.Fatalf("small: %q, %v", data, err)
	}
	if _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big: %v", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}
