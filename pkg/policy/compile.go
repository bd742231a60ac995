package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// maxIDLen bounds a policy id: ids travel in decisions, audit records and error bodies.
const maxIDLen = 128

// CompileError is one problem in one policy file. Line and Column are 1-based; they point at the offending token
// for a syntax error and at the start of the policy for every other error.
type CompileError struct {
	File     string
	Line     int
	Column   int
	PolicyID string // empty when the policy's id is not known (syntax error, missing @id)
	Msg      string
}

func (e *CompileError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.PolicyID != "" {
		return fmt.Sprintf("%s: policy %q: %s", loc, e.PolicyID, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// CompileErrors is every problem Compile found, in file then line order. Compile reports all of them at once so an
// author can fix a file in one pass.
type CompileErrors []*CompileError

func (es CompileErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return "policy: " + strings.Join(lines, "\n")
}

// Set is a compiled, validated, immutable policy set. It is safe for concurrent use.
type Set struct {
	model    *model
	policies map[cedar.PolicyID]*compiled
	index    map[scopeKey][]*compiled
	reads    readSet // what some policy reads; the rest is left out of every request
	version  string
}

// compiled is one policy with where it came from.
type compiled struct {
	id      cedar.PolicyID
	policy  *cedar.Policy // as written, but for its action scope (see actionScope)
	actions uint64        // the request actions its action scope admits
	forbid  bool
	info    PolicyInfo
}

// allActions admits every action.
const allActions = ^uint64(0)

// PolicyInfo describes one policy of a Set.
type PolicyInfo struct {
	ID     string
	Effect string // "permit" or "forbid"
	File   string
	Line   int
	Column int
}

func (p PolicyInfo) String() string {
	return fmt.Sprintf("%s %s (%s:%d:%d)", p.Effect, p.ID, p.File, p.Line, p.Column)
}

// Compile parses, checks and indexes policy files (file name → Cedar text). Every policy must carry an
// @id("...") annotation that is unique across all files: the id is what decisions and audit records name, so it
// must not change when policies are reordered. Every policy is validated against Schema() in strict mode, so a
// misspelt attribute, type, action or enum value fails here instead of silently never matching. On any problem
// Compile returns CompileErrors and no Set; the caller keeps serving its previous Set.
func Compile(files map[string][]byte) (*Set, error) {
	m, err := loadModel()
	if err != nil {
		return nil, err
	}
	s := &Set{model: m, policies: map[cedar.PolicyID]*compiled{}, index: map[scopeKey][]*compiled{}}
	var errs CompileErrors
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		src := files[name]
		fmt.Fprintf(h, "%d:%s%d:", len(name), name, len(src))
		h.Write(src)
		errs = append(errs, s.addFile(name, src)...)
	}
	if len(errs) > 0 {
		slices.SortStableFunc(errs, func(a, b *CompileError) int {
			if c := strings.Compare(a.File, b.File); c != 0 {
				return c
			}
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, errs
	}
	s.version = hex.EncodeToString(h.Sum(nil))
	return s, nil
}

// LoadDir compiles every *.cedar file directly inside dir (not its subdirectories). A directory without policy
// files is an error: an empty set would deny everything, which is more likely a wrong path than the intent.
func LoadDir(dir string) (*Set, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.cedar"))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("policy: no *.cedar files in %s", dir)
	}
	files := make(map[string][]byte, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		files[filepath.Base(n)] = b
	}
	return Compile(files)
}

// Version is a digest of the source files (names and contents); equal sources give equal versions. It is meant
// for audit records and for the controller to tell which policies a sidecar runs.
func (s *Set) Version() string { return s.version }

// Len is the number of policies.
func (s *Set) Len() int { return len(s.policies) }

// Policy describes the policy with the given id.
func (s *Set) Policy(id string) (PolicyInfo, bool) {
	c, ok := s.policies[cedar.PolicyID(id)]
	if !ok {
		return PolicyInfo{}, false
	}
	return c.info, true
}

// Policies describes every policy, sorted by id.
func (s *Set) Policies() []PolicyInfo {
	out := make([]PolicyInfo, 0, len(s.policies))
	for _, c := range s.policies {
		out = append(out, c.info)
	}
	slices.SortFunc(out, func(a, b PolicyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// cedarPos finds "<input>:line:col" in cedar-go's parse errors, the only form in which it reports positions.
var cedarPos = regexp.MustCompile(`<input>:(\d+):(\d+):? ?`)

func (s *Set) addFile(name string, src []byte) CompileErrors {
	list, err := cedar.NewPolicyListFromBytes(name, src)
	if err != nil {
		return CompileErrors{parseError(name, err)}
	}
	var errs CompileErrors
	for _, p := range list {
		pos := p.Position()
		at := func(id, format string, args ...any) *CompileError {
			return &CompileError{File: name, Line: pos.Line, Column: pos.Column, PolicyID: id, Msg: fmt.Sprintf(format, args...)}
		}
		idVal, ok := p.Annotations()["id"]
		id := string(idVal)
		switch {
		case !ok:
			errs = append(errs, at("", `policy has no @id("...") annotation`))
			continue
		case !validID(id):
			errs = append(errs, at("", "@id %q must be 1 to %d printable characters without spaces", id, maxIDLen))
			continue
		}
		if prev, dup := s.policies[cedar.PolicyID(id)]; dup {
			errs = append(errs, at(id, "duplicate @id, first used at %s:%d:%d", prev.info.File, prev.info.Line, prev.info.Column))
			continue
		}
		if verr := s.model.validator.Policy("", (*xast.Policy)(p.AST())); verr != nil {
			for _, msg := range validationMessages(verr) {
				errs = append(errs, at(id, "%s", msg))
			}
			continue
		}
		if e := s.model.checkEnums((*xast.Policy)(p.AST())); e != nil {
			errs = append(errs, at(id, "%v", e))
			continue
		}
		c := &compiled{
			id:     cedar.PolicyID(id),
			forbid: p.Effect() == cedar.Forbid,
			info:   PolicyInfo{ID: id, Effect: "permit", File: name, Line: pos.Line, Column: pos.Column},
		}
		c.actions, c.policy = s.model.actionScope(p)
		if c.forbid {
			c.info.Effect = "forbid"
		}
		s.policies[c.id] = c
		s.reads |= reads((*xast.Policy)(p.AST()))
		k := keyOf((*xast.Policy)(p.AST()))
		s.index[k] = append(s.index[k], c)
	}
	return errs
}

// parseError turns a cedar-go syntax error into a CompileError with the file's own line and column.
func parseError(file string, err error) *CompileError {
	msg := strings.TrimPrefix(err.Error(), "parser error: ")
	ce := &CompileError{File: file}
	if loc := cedarPos.FindStringSubmatchIndex(msg); loc != nil {
		ce.Line, _ = strconv.Atoi(msg[loc[2]:loc[3]])
		ce.Column, _ = strconv.Atoi(msg[loc[4]:loc[5]])
		msg = msg[:loc[0]] + msg[loc[1]:]
	}
	msg = strings.TrimPrefix(msg, "parse error at ")
	if rest, ok := strings.CutPrefix(msg, `"": `); ok {
		ce.Msg = "syntax error at end of input: " + rest
	} else if strings.HasPrefix(msg, `"`) {
		ce.Msg = "syntax error at " + msg // the offending token, then the problem
	} else {
		ce.Msg = "syntax error: " + msg
	}
	return ce
}

func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for _, r := range id {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// checkEnums rejects entity literals of an enum type whose value the enum does not list, e.g.
// AuthMethod::"mtsl". cedar-go's validator checks the type but not the value.
func (m *model) checkEnums(p *xast.Policy) error {
	var bad error
	for _, cond := range p.Conditions {
		xast.Inspect(xast.NewNode(cond.Body), func(n xast.IsNode) bool {
			v, ok := n.(xast.NodeValue)
			if !ok || bad != nil {
				return bad == nil
			}
			uid, ok := v.Value.(types.EntityUID)
			if !ok {
				return true
			}
			if values, isEnum := m.enums[uid.Type]; isEnum && !slices.Contains(values, uid) {
				bad = fmt.Errorf("%s is not a value of enum %s (%v)", uid, uid.Type, values)
			}
			return true
		})
	}
	return bad
}

// reads is what p reads of a request beyond its entities. Of the context, the attributes it names in `context.x`,
// `context["x"]` or `context has x`, or all of them when it uses context any other way (`context == {...}`,
// `[context]`). Of an MCP call's resource, its tags, unless every hasTag and getTag in p is on the principal (an
// Agent) or on context.subject (a User). Anything no policy reads can be left out of a request without changing
// any decision or error.
func reads(p *xast.Policy) readSet {
	var named readSet
	uses, byName := 0, 0
	for _, cond := range p.Conditions {
		xast.Inspect(xast.NewNode(cond.Body), func(n xast.IsNode) bool {
			var s xast.StrOpNode
			switch n := n.(type) {
			case xast.NodeTypeVariable:
				if n.Name == "context" {
					uses++
				}
				return true
			case xast.NodeTypeHasTag:
				named |= tagsRead(n.Left)
				return true
			case xast.NodeTypeGetTag:
				named |= tagsRead(n.Left)
				return true
			case xast.NodeTypeAccess:
				s = n.StrOpNode
			case xast.NodeTypeHas:
				s = n.StrOpNode
			default:
				return true
			}
			if v, ok := s.Arg.(xast.NodeTypeVariable); ok && v.Name == "context" {
				byName++
				named |= ctxAttrNamed(s.Value)
			}
			return true
		})
	}
	if uses != byName {
		named |= ctxAll
	}
	return named
}

// tagsRead is callTags unless the entity whose tags are read is the principal or context.subject.
func tagsRead(entity xast.IsNode) readSet {
	switch e := entity.(type) {
	case xast.NodeTypeVariable:
		if e.Name == "principal" {
			return 0
		}
	case xast.NodeTypeAccess:
		if v, ok := e.Arg.(xast.NodeTypeVariable); ok && v.Name == "context" && e.Value == "subject" {
			return 0
		}
	}
	return callTags
}

// forAction is the per-action suffix of cedar-go's validation messages. The validator checks a policy once per
// action it may apply to, so one mistake is reported once per action; without the suffix they collapse into one.
var forAction = regexp.MustCompile(` for Action::"[^"]*"`)

// validationMessages flattens a validator error into distinct messages, sorted for a stable report.
func validationMessages(err error) []string {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, forAction.ReplaceAllString(e.Error(), ""))
	}
	slices.Sort(msgs)
	return slices.Compact(msgs)
}
