package confyaml

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxDepth bounds the walk: configs are a few levels deep, and aliases could otherwise nest without end.
const maxDepth = 64

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// checkShape walks the YAML document against the Go type it is decoded into and reports, in the YAML's own terms,
// every key the type has no field for (with the nearest valid key) and every value of the wrong kind. The YAML
// decoder reports these too, but names Go types (`field serverId not found in type sidecar.RouteConfig`), which
// mean nothing to an operator.
func checkShape(root *yaml.Node, t reflect.Type) []*FieldError {
	w := &shapeWalker{aliased: map[aliasVisit]bool{}}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	if root.Kind == 0 {
		return nil // an empty file: an empty config
	}
	w.walk(root, t, "", 0)
	return w.problems
}

type shapeWalker struct {
	problems []*FieldError
	// aliased records the anchored nodes walked through an alias, so that each is walked once per type: aliases
	// of aliases would otherwise make the walk exponential in the document's size.
	aliased map[aliasVisit]bool
}

type aliasVisit struct {
	n *yaml.Node
	t reflect.Type
}

func (w *shapeWalker) add(n *yaml.Node, path, format string, args ...any) {
	if path == "" {
		path = "(top level)"
	}
	w.problems = append(w.problems, &FieldError{Field: path, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func (w *shapeWalker) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	if depth > maxDepth {
		w.add(n, path, "nested too deeply")
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil || w.aliased[aliasVisit{n.Alias, t}] {
			return
		}
		w.aliased[aliasVisit{n.Alias, t}] = true
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the field unset
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return // the type reads its own YAML and says what is wrong
	}
	switch t.Kind() {
	case reflect.Interface:
		return
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expects a mapping (key: value), not %s", describe(n))
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				w.walk(v, t, path, depth+1) // a merge key: its mapping's keys land here
				continue
			}
			f, ok := fields[k.Value]
			if !ok {
				w.unknown(k, join(path, k.Value), fields)
				continue
			}
			w.walk(v, f, join(path, k.Value), depth+1)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "expects a mapping (key: value), not %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), depth+1)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "expects a list, not %s", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "expects %s, not %s", kindName(t), describe(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			w.add(n, path, "expects %s, not %q", kindName(t), n.Value)
		}
	}
}

// unknown reports key k, which the mapping at its place has no field for, with the valid key nearest to it.
func (w *shapeWalker) unknown(k *yaml.Node, path string, fields map[string]reflect.Type) {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	if s := Suggest(k.Value, names); s != "" {
		w.add(k, path, "unknown key %q; did you mean %q?", k.Value, s)
		return
	}
	slices.Sort(names)
	w.add(k, path, "unknown key %q; valid keys here: %s", k.Value, strings.Join(names, ", "))
}

// yamlFields maps the YAML keys of struct type t to their types, following ",inline" fields the way the decoder
// does; a field without a yaml tag has its lowercased name as key.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

// Suggest returns the name in names nearest to key: the one equal to it but for case, else the one at the
// smallest edit distance, when that is small for key's length; "" when none is near.
func Suggest(key string, names []string) string {
	for _, n := range names {
		if strings.EqualFold(n, key) {
			return n
		}
	}
	best, bestD := "", max(1, len([]rune(key))/3)+1
	for _, n := range names {
		if d := editDistance(strings.ToLower(key), strings.ToLower(n)); d < bestD || d == bestD && best != "" && n < best {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b, in runes: insertions, deletions,
// substitutions and swaps of neighbours (the commonest typo) cost 1 each.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindName says what a scalar of type t looks like in YAML.
func kindName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration such as 30s or 5m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "a whole number"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr:
		return "a whole number, zero or more"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a single value"
	}
}

// describe names what a node is, for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}
