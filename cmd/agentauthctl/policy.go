package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aymanbagabas/go-udiff"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller"
	"github.com/agentauth/agentauth/pkg/policy"
	"github.com/agentauth/agentauth/pkg/policy/mcp"
	"github.com/agentauth/agentauth/pkg/revocation"
	"github.com/agentauth/agentauth/pkg/wire"
)

func newPolicyCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Apply, list, diff and dry-run Cedar policies",
		Args:  noSubcommand,
		RunE:  needSubcommand,
	}
	cmd.AddCommand(newPolicyApplyCmd(a), newPolicyListCmd(a), newPolicyDiffCmd(a), newPolicyCheckCmd(a))
	return cmd
}

func newPolicyApplyCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "apply FILE.cedar...",
		Short: "Replace the controller's whole policy set with these files",
		Long: `Replace the controller's whole policy set with these Cedar files. The set is compiled first: a set that
does not compile changes nothing, and the error names the file and line. Run 'policy diff' first to see what
changes. Each policy's id is its file's base name.`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: cedarFiles,
		RunE: a.run(func(cmd *cobra.Command, files []string) error {
			docs, err := readPolicyFiles(files)
			if err != nil {
				return err
			}
			b, err := a.call(cmd.Context(), http.MethodPut, "/v1/policies", controller.PoliciesRequest{Policies: docs})
			if err != nil {
				return err
			}
			var ans struct {
				Version  string `json:"version"`
				Policies int    `json:"policies"`
			}
			if err := json.Unmarshal(b, &ans); err != nil {
				return err
			}
			return a.print(b, nil, func(t *tabwriter.Writer) {
				fmt.Fprintf(t, "applied %d policies from %d files (set version %s)\n", ans.Policies, len(docs), ans.Version)
			})
		}),
	}
}

func newPolicyListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show the policies the controller serves",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			raw, live, err := a.livePolicies(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(raw, nil, func(t *tabwriter.Writer) {
				row(t, "ID", "SOURCE", "LINES", "BYTES")
				for _, p := range live {
					row(t, p.GetId(), p.GetSource(), fmt.Sprint(strings.Count(p.GetCedar(), "\n")), fmt.Sprint(len(p.GetCedar())))
				}
			})
		}),
	}
}

// policyChange is one file's difference between the local files and the live set.
type policyChange struct {
	Source string `json:"source"`
	// Change is "added" (local only: apply adds it), "removed" (live only: apply removes it), "changed" or
	// "unchanged".
	Change string `json:"change"`
	Diff   string `json:"diff,omitempty"`
}

func newPolicyDiffCmd(a *app) *cobra.Command {
	var dir string
	var exitCode bool
	cmd := &cobra.Command{
		Use:   "diff [FILE.cedar...]",
		Short: "Show what 'policy apply' of these files would change in the live set",
		Long: `Compare local Cedar files (or every *.cedar file of --dir) with the controller's live policy set, file by
file, as unified diffs: what 'policy apply' with the same files would change. Policies live but not given
locally would be removed by apply. With --exit-code, differences exit 1 (as git diff --exit-code does).`,
		ValidArgsFunction: cedarFiles,
		RunE: a.run(func(cmd *cobra.Command, files []string) error {
			if dir != "" && len(files) > 0 {
				return usagef("give files or --dir, not both")
			}
			if len(files) == 0 {
				if dir == "" {
					return usagef("give the .cedar files to compare, or --dir")
				}
				var err error
				if files, err = filepath.Glob(filepath.Join(dir, "*.cedar")); err != nil {
					return err
				}
				if len(files) == 0 {
					return fmt.Errorf("no *.cedar files in %s", dir)
				}
			}
			docs, err := readPolicyFiles(files)
			if err != nil {
				return err
			}
			_, live, err := a.livePolicies(cmd.Context())
			if err != nil {
				return err
			}
			changes := diffPolicies(docs, live)
			if err := a.print(nil, changes, func(t *tabwriter.Writer) {
				for _, c := range changes {
					if c.Change != "unchanged" {
						fmt.Fprint(t, c.Diff)
					}
				}
			}); err != nil {
				return err
			}
			if exitCode && slices.ContainsFunc(changes, func(c policyChange) bool { return c.Change != "unchanged" }) {
				return errRefused
			}
			return nil
		}),
	}
	cmd.Flags().StringVar(&dir, "dir", "", "compare every *.cedar file of this directory")
	cmd.Flags().BoolVar(&exitCode, "exit-code", false, "exit 1 when there are differences")
	_ = cmd.MarkFlagDirname("dir")
	return cmd
}

// diffPolicies compares local documents with the live set by source (file name), in name order.
func diffPolicies(local []controller.PolicyDoc, live []*agentauthv1.Policy) []policyChange {
	liveBy := map[string]string{}
	for _, p := range live {
		liveBy[policySource(p)] = p.GetCedar()
	}
	localBy := map[string]string{}
	for _, d := range local {
		localBy[d.Source] = d.Cedar
	}
	names := slices.Sorted(maps.Keys(liveBy))
	for name := range localBy {
		if _, ok := liveBy[name]; !ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	changes := make([]policyChange, 0, len(names))
	for _, name := range names {
		old, isLive := liveBy[name]
		cur, isLocal := localBy[name]
		c := policyChange{Source: name}
		switch {
		case !isLive:
			c.Change = "added"
		case !isLocal:
			c.Change = "removed"
		case old == cur:
			c.Change = "unchanged"
		default:
			c.Change = "changed"
		}
		if c.Change != "unchanged" {
			oldName, newName := "live/"+name, "local/"+name
			if !isLive {
				oldName = "/dev/null"
			}
			if !isLocal {
				newName = "/dev/null"
			}
			c.Diff = udiff.Unified(oldName, newName, old, cur)
		}
		changes = append(changes, c)
	}
	return changes
}

// policySource is the file name a live policy came from.
func policySource(p *agentauthv1.Policy) string {
	if p.GetSource() != "" {
		return p.GetSource()
	}
	return p.GetId()
}

// checkResult is policy check's answer for -o json and yaml.
type checkResult struct {
	Allowed      bool                `json:"allowed"`
	Reason       string              `json:"reason,omitempty"`
	Message      string              `json:"message"`
	RevocationID string              `json:"revocation_id,omitempty"`
	Policies     []policy.PolicyInfo `json:"policies,omitempty"`
	Errors       []string            `json:"errors,omitempty"`
	SetVersion   string              `json:"set_version,omitempty"`
	Calls        []callResult        `json:"calls,omitempty"`
}

type callResult struct {
	Method   string   `json:"method"`
	Name     string   `json:"name,omitempty"`
	Allowed  bool     `json:"allowed"`
	Reason   string   `json:"reason,omitempty"`
	Policies []string `json:"policies,omitempty"`
}

func newPolicyCheckCmd(a *app) *cobra.Command {
	var (
		dir, agent, method, host, path, authMethod, user, subjectKind, risk, mcpBody, issuedAt, at string
		claims                                                                                     map[string]string
		live                                                                                       bool
	)
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Dry run: would this request be allowed, and by which policy? DENY exits 1",
		Long: `Dry run: would this request be allowed, and by which policy? ALLOW exits 0 and DENY exits 1, so CI can gate
on it.

Policies come from --dir (default: the current directory), or with --live from the controller's live set.
With --live the controller's live revocations are checked too, as a sidecar checks them before policy (with
--dir as well: local policies, live revocations). A revocation refuses credentials issued before it; --issued-at
says when the agent's (and the user's) credentials were issued, and without it they count as issued before any
revocation, as a sidecar counts a credential whose issue time it does not know.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if agent == "" {
				return usagef("--agent is required")
			}
			var issued time.Time
			if issuedAt != "" {
				var err error
				if issued, err = time.Parse(time.RFC3339, issuedAt); err != nil {
					return usagef("--issued-at %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", issuedAt)
				}
			}
			var when time.Time
			if at != "" {
				var err error
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return usagef("--time %q: want RFC 3339, e.g. 2026-01-02T15:04:05Z", at)
				}
			}
			req := policy.Request{AgentID: agent, AgentIssuedAt: issued, AuthMethod: wire.AuthMethod(authMethod),
				DelegatedSubject: user, DelegatedClaims: claims, DelegatedIssuedAt: issued, SubjectKind: policy.SubjectKind(subjectKind), Host: host, Method: method, Path: path,
				RiskLevel: policy.RiskLevel(risk), Time: when}
			if mcpBody != "" {
				b, err := os.ReadFile(mcpBody)
				if err != nil {
					return err
				}
				msg, err := mcp.Parse("application/json", b, 0)
				if err != nil {
					return fmt.Errorf("MCP body: %w", err)
				}
				req.Method, req.MCP = http.MethodPost, msg.Calls
			}
			set, revs, err := a.checkInputs(cmd, dir, live)
			if err != nil {
				return err
			}
			res, text := decide(cmd.Context(), set, revs, req)
			if err := a.print(nil, res, func(t *tabwriter.Writer) { fmt.Fprint(t, text) }); err != nil {
				return err
			}
			if !res.Allowed {
				return errRefused
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory of .cedar policy files")
	f.BoolVar(&live, "live", false, "use the controller's live policy set (unless --dir is given) and its live revocations")
	f.StringVar(&agent, "agent", "", "the agent's SPIFFE ID (required)")
	f.StringVar(&method, "method", "GET", "HTTP method")
	f.StringVar(&host, "host", "", "tool host")
	f.StringVar(&path, "path", "/", "request path")
	f.StringVar(&authMethod, "auth", string(wire.AuthWITWPT), "auth method: mtls, wit-wpt or wit-httpsig")
	f.StringVar(&user, "user", "", "delegated subject (Txn-Token sub)")
	f.StringToStringVar(&claims, "claim", nil, "with --user: a claim of the Txn-Token as name=value (repeatable), e.g. scope=\"a b\", the granted scopes")
	f.StringVar(&subjectKind, "subject-kind", "", "who the Txn-Token sub is: user (the default with --user), self or system")
	f.StringVar(&risk, "risk", "", "risk level: LOW, MEDIUM or HIGH")
	f.StringVar(&mcpBody, "mcp", "", "file with an MCP JSON-RPC body (the request is then an MCP POST)")
	f.StringVar(&at, "time", "", "when the request arrives (RFC 3339; default now): context.time, now and hour")
	f.StringVar(&issuedAt, "issued-at", "", "with --live: when the credentials were issued (RFC 3339; default unknown)")
	_ = cmd.MarkFlagDirname("dir")
	_ = cmd.RegisterFlagCompletionFunc("auth", cobra.FixedCompletions([]string{string(wire.AuthMTLS), string(wire.AuthWITWPT), string(wire.AuthWITHTTPSig)}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("risk", cobra.FixedCompletions([]string{"LOW", "MEDIUM", "HIGH"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// checkInputs gathers policy check's policy set and, with live, the live revocations.
func (a *app) checkInputs(cmd *cobra.Command, dir string, live bool) (*policy.Set, []*agentauthv1.Revocation, error) {
	if !live {
		set, err := policy.LoadDir(dir)
		return set, nil, err
	}
	var set *policy.Set
	var err error
	if cmd.Flags().Changed("dir") {
		set, err = policy.LoadDir(dir)
	} else {
		var ps []*agentauthv1.Policy
		if _, ps, err = a.livePolicies(cmd.Context()); err == nil {
			set, err = policy.CompileResources(ps)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	_, revs, err := a.liveRevocations(cmd.Context())
	return set, revs, err
}

// decide answers req as a sidecar would: revocations (when given) first, then policy.
func decide(ctx context.Context, set *policy.Set, revs []*agentauthv1.Revocation, req policy.Request) (checkResult, string) {
	if revs != nil {
		d := policy.NewEngine(set, policy.WithRevocations(revoked(revs, time.Now()))).Decide(ctx, req)
		if d.RevocationID != "" {
			return checkResult{Reason: d.Reason, Message: d.String(), RevocationID: d.RevocationID},
				fmt.Sprintf("DENY (%s): %s\n", d.Reason, d)
		}
	}
	ex := policy.Explain(set, req)
	d := ex.Decision
	res := checkResult{Allowed: d.Allowed, Reason: d.Reason, Message: d.String(), Policies: ex.Policies,
		Errors: d.Errors, SetVersion: ex.Version}
	for _, c := range d.PerCall {
		res.Calls = append(res.Calls, callResult{Method: c.Call.Method, Name: c.Call.Name, Allowed: c.Allowed,
			Reason: c.Reason, Policies: c.PolicyIDs})
	}
	return res, ex.String()
}

// revoked matches a subject against a list of revocations as a sidecar matches it against its xDS state
// (revocation.Index.RefusingClass: every kind of the subject's class, a delegated user by the name the token
// service gives her).
func revoked(revs []*agentauthv1.Revocation, now time.Time) policy.RevocationsFunc {
	idx := revocation.NewIndex(revs...)
	return func(_ context.Context, class, value string, issuedAt time.Time) (string, bool) {
		if r := idx.RefusingClass(revocation.Class(class), value, issuedAt, now); r != nil {
			return r.GetId() + ": " + r.Describe(), true
		}
		return "", false
	}
}

// readPolicyFiles reads Cedar files as the admin API takes them, named by base name.
func readPolicyFiles(files []string) ([]controller.PolicyDoc, error) {
	docs := make([]controller.PolicyDoc, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		docs = append(docs, controller.PolicyDoc{Source: filepath.Base(f), Cedar: string(b)})
	}
	return docs, nil
}

// livePolicies fetches the controller's policy set.
func (a *app) livePolicies(ctx context.Context) ([]byte, []*agentauthv1.Policy, error) {
	return listProto(ctx, a, "/v1/policies", "policies", func() *agentauthv1.Policy { return new(agentauthv1.Policy) })
}

// liveRevocations fetches the controller's revocations.
func (a *app) liveRevocations(ctx context.Context) ([]byte, []*agentauthv1.Revocation, error) {
	return listProto(ctx, a, "/v1/revocations", "revocations", func() *agentauthv1.Revocation { return new(agentauthv1.Revocation) })
}

// listProto fetches an admin API list of protobuf JSON messages ({"key": [...]}).
func listProto[M proto.Message](ctx context.Context, a *app, path, key string, newM func() M) ([]byte, []M, error) {
	var ans map[string][]json.RawMessage
	raw, err := a.get(ctx, path, &ans)
	if err != nil {
		return nil, nil, err
	}
	out := make([]M, 0, len(ans[key]))
	for _, item := range ans[key] {
		m := newM()
		if err := protojson.Unmarshal(item, m); err != nil {
			return nil, nil, fmt.Errorf("GET %s: %w", path, err)
		}
		out = append(out, m)
	}
	return raw, out, nil
}

func cedarFiles(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{"cedar"}, cobra.ShellCompDirectiveFilterFileExt
}
