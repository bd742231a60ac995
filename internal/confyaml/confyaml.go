package confyaml

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxBytes caps a config file: a config is hand-sized (or rendered), a larger file is a mistake.
const MaxBytes = 4 << 20

// FieldError is one validation problem: the field's path (e.g. "egress.routes[1].upstream") and what is wrong.
// Line is the YAML line when the config came from YAML, else 0.
type FieldError struct {
	Field string
	Line  int
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// ValidationError holds every problem found in one config.
type ValidationError struct {
	What   string // e.g. "sidecar config"
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		msgs[i] = fe.Error()
	}
	return "invalid " + e.What + ":\n  " + strings.Join(msgs, "\n  ")
}

// Problems collects FieldErrors during validation.
type Problems struct {
	list []*FieldError
}

// Add records that field is wrong; format and args say how.
func (p *Problems) Add(field, format string, args ...any) {
	p.list = append(p.list, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Err is nil when nothing was added, else a *ValidationError about what.
func (p *Problems) Err(what string) error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{What: what, Errors: p.list}
}

// Config is a binary's configuration: filled with defaults after decoding, then validated. Validate returns a
// *ValidationError (from Problems.Err) so that Parse can give each problem its YAML line.
type Config interface {
	SetDefaults()
	Validate() error
}

// Load reads the config file at path (at most MaxBytes) and Parses it into cfg; errors name what and path.
func Load(what, path string, cfg Config) error {
	data, err := readFile(path)
	if err == nil {
		err = Parse(what, data, cfg)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, path, err)
	}
	return nil
}

// Parse decodes data into cfg, fills defaults and validates; every field error gets its YAML line, and they come
// in file order. Unknown keys (with the valid key nearest to each) and values of the wrong kind are reported
// first, on their own: what validation would say about a config that did not decode is noise. what names the
// config in the *ValidationError, e.g. "sidecar config".
func Parse(what string, data []byte, cfg Config) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return err
	}
	if problems := checkShape(&root, reflect.TypeOf(cfg)); len(problems) > 0 {
		slices.SortStableFunc(problems, func(a, b *FieldError) int { return a.Line - b.Line })
		return &ValidationError{What: what, Errors: problems}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && err != io.EOF {
		return err
	}
	cfg.SetDefaults()
	err := cfg.Validate()
	if ve, ok := err.(*ValidationError); ok {
		for _, fe := range ve.Errors {
			fe.Line = lineOf(&root, fe.Field)
		}
		slices.SortStableFunc(ve.Errors, func(a, b *FieldError) int { return a.Line - b.Line })
	}
	return err
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, err
	}
	if n > MaxBytes {
		return nil, fmt.Errorf("larger than %d bytes", MaxBytes)
	}
	return buf.Bytes(), nil
}

// lineOf finds the YAML line of a field path such as "egress.routes[1].upstream"; it falls back to the
// nearest existing parent, and to 0 when nothing matches.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			if k, err := strconv.Atoi(part[i+1 : len(part)-1]); err == nil {
				idx = k
			}
		}
		key, next := mapEntry(n, name)
		if next == nil {
			return line
		}
		n, line = next, key.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n, line = n.Content[idx], n.Content[idx].Line
		}
	}
	return line
}

// mapEntry finds key in a mapping node: the key's node (for its line) and the value's.
func mapEntry(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// maxSecretBytes caps a secret file: a token or an Authorization header value.
const maxSecretBytes = 64 << 10

// ReadSecret reads a secret (a token, an Authorization header value) from the file at path, as the …File fields
// of the configs name them: the contents without trailing newlines (editors and `echo` add one). A missing,
// unreadable, oversized or empty file is an error naming path.
func ReadSecret(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxSecretBytes {
		return "", fmt.Errorf("%s: larger than %d bytes, not a secret", path, maxSecretBytes)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return s, nil
}
