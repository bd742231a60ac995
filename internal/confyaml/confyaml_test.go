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

	defaulted bool
	wrong     []string // fields Validate reports
}

func (c *config) SetDefaults() { c.defaulted = true }

func (c *config) Validate() error {
	var p Problems
	for _, f := range c.wrong {
		p.Add(f, "wrong")
	}
	return p.Err("test config")
}

func TestLines(t *testing.T) {
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
	var cfg config
	for _, tt := range tests {
		cfg.wrong = append(cfg.wrong, tt.field)
	}
	err := Parse([]byte(doc), &cfg)
	if !cfg.defaulted {
		t.Error("defaults were not applied before validation")
	}
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

func TestParseIsStrict(t *testing.T) {
	var cfg config
	err := Parse([]byte("name: x\ncolour: red\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "line 2: field colour not found") {
		t.Fatalf("got %v", err)
	}
	if err := Parse([]byte("name: [unclosed\n"), &cfg); err == nil {
		t.Fatal("malformed YAML decoded")
	}
	// An empty file is an empty config: validation then says what is missing.
	empty := config{wrong: []string{"name"}}
	if err := Parse(nil, &empty); err == nil || !strings.Contains(err.Error(), "name: wrong") {
		t.Fatalf("empty config: %v", err)
	}
}

func TestLoadCapsSize(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.yaml"), filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(small, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, make([]byte, MaxBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	var cfg config
	if err := Load("test config", small, &cfg); err != nil || cfg.Name != "demo" || len(cfg.Routes) != 2 {
		t.Fatalf("small: %+v, %v", cfg, err)
	}
	if err := Load("test config", big, &cfg); err == nil || !strings.Contains(err.Error(), "test config "+big+": larger than") {
		t.Fatalf("big: %v", err)
	}
	if err := Load("test config", filepath.Join(dir, "missing.yaml"), &cfg); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}
