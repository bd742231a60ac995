package confyaml

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	err := Parse("test config", []byte(doc), &cfg)
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
	err := Parse("test config", []byte("name: x\ncolour: red\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), `line 2: colour: unknown key "colour"`) {
		t.Fatalf("got %v", err)
	}
	if err := Parse("test config", []byte("name: [unclosed\n"), &cfg); err == nil {
		t.Fatal("malformed YAML decoded")
	}
	// An empty file is an empty config: validation then says what is missing.
	empty := config{wrong: []string{"name"}}
	if err := Parse("test config", nil, &empty); err == nil || !strings.Contains(err.Error(), "name: wrong") {
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

type shapeConfig struct {
	ServerID string        `yaml:"serverID"`
	Upstream string        `yaml:"upstream"`
	Timeout  time.Duration `yaml:"timeout"`
	Enabled  *bool         `yaml:"enabled"`
	Max      int           `yaml:"max"`
	UID      *uint32       `yaml:"uid"`
	Routes   []struct {
		Name string `yaml:"name"`
		Host string `yaml:"host"`
	} `yaml:"routes"`
	Bundles map[string][]string `yaml:"bundles"`
	Limits  struct {
		Inner `yaml:",inline"`
	} `yaml:"limits"`
	Any any `yaml:"any"`
}

type Inner struct {
	ReadTimeout time.Duration `yaml:"readTimeout"`
}

func (*shapeConfig) SetDefaults()    {}
func (*shapeConfig) Validate() error { return nil }

// TestShapeErrors: unknown keys and values of the wrong kind are named by their YAML path and line, with the
// valid key nearest to an unknown one, and never by Go type names.
func TestShapeErrors(t *testing.T) {
	tests := []struct {
		name, doc, field string
		line             int
		msg              string
	}{
		{"case only", "serverId: x\n", "serverId", 1, `unknown key "serverId"; did you mean "serverID"?`},
		{"typo", "upstream: x\nupstrem: y\n", "upstrem", 2, `did you mean "upstream"?`},
		{"nested in a list", "routes:\n  - name: a\n  - nmae: b\n", "routes[1].nmae", 3, `did you mean "name"?`},
		{"inline field", "limits: {readTimout: 5s}\n", "limits.readTimout", 1, `did you mean "readTimeout"?`},
		{"far from every key", "colour: red\n", "colour", 1, `unknown key "colour"; valid keys here: any, bundles, enabled,`},
		{"duration", "timeout: 30\n", "timeout", 1, `expects a duration such as 30s or 5m, not "30"`},
		{"bool", "enabled: maybe\n", "enabled", 1, `expects true or false, not "maybe"`},
		{"int", "\nmax: lots\n", "max", 2, `expects a whole number, not "lots"`},
		{"uint", "uid: -1\n", "uid", 1, `expects a whole number, zero or more, not "-1"`},
		{"list expected", "routes: {name: a}\n", "routes", 1, "expects a list, not a mapping"},
		{"mapping expected", "limits: [1]\n", "limits", 1, "expects a mapping (key: value), not a list"},
		{"scalar expected", "serverID: [a]\n", "serverID", 1, "expects a single value, not a list"},
		{"map of lists", "bundles: {example.org: x}\n", "bundles.example.org", 1, "expects a list"},
		{"top level", "- a\n", "(top level)", 1, "expects a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Parse("test config", []byte(tt.doc), &shapeConfig{})
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) != 1 {
				t.Fatalf("got %v", err)
			}
			fe := ve.Errors[0]
			if fe.Field != tt.field || fe.Line != tt.line || !strings.Contains(fe.Msg, tt.msg) {
				t.Errorf("got %q (line %d): %q; want %q (line %d): %q", fe.Field, fe.Line, fe.Msg, tt.field, tt.line, tt.msg)
			}
			for _, goName := range []string{"confyaml.", "shapeConfig", "time.Duration", "uint32", "not found in type"} {
				if strings.Contains(err.Error(), goName) {
					t.Errorf("message names Go type %q: %v", goName, err)
				}
			}
		})
	}
	// Every problem at once, in file order; what is valid decodes.
	err := Parse("test config", []byte("max: x\nany: {whatever: 1}\nserverid: a\nenabled: true\n"), &shapeConfig{})
	if err == nil || !strings.Contains(err.Error(), "invalid test config:\n  line 1: max: expects a whole number") ||
		!strings.Contains(err.Error(), "\n  line 3: serverid: unknown key") {
		t.Fatalf("got %v", err)
	}
	var ok shapeConfig
	if err := Parse("test config", []byte("serverID: a\ntimeout: 2s\nenabled:\nbundles: {x: [a]}\nlimits: {readTimeout: 1s}\n"), &ok); err != nil ||
		ok.Timeout != 2*time.Second || ok.Limits.ReadTimeout != time.Second {
		t.Fatalf("valid config: %+v, %v", ok, err)
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"serverID", "upstream", "modes", "pathPrefix", "name"}
	for key, want := range map[string]string{
		"serverId": "serverID", "SERVERID": "serverID", "upstrem": "upstream", "mode": "modes",
		"pathprefx": "pathPrefix", "nmae": "name", "colour": "", "x": "", "": "",
	} {
		if got := Suggest(key, names); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct{ name, data, want string }{
		{"plain", "Bearer abc", "Bearer abc"},
		{"newline", "Bearer abc\n", "Bearer abc"},
		{"crlf", "Bearer abc\r\n", "Bearer abc"},
		{"inner spaces kept", " tok en \n\n", " tok en "},
	} {
		if got, err := ReadSecret(write(tt.name, tt.data)); err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"empty", write("empty", ""), "empty"},
		{"only a newline", write("nl", "\n"), "empty"},
		{"too large", write("big", strings.Repeat("x", maxSecretBytes+1)), "larger than"},
	} {
		if _, err := ReadSecret(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("%s: %v; want an error naming %s and containing %q", tt.name, err, tt.path, tt.want)
		}
	}
}
