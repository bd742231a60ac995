package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/pkg/audit"
)

// traceLogStatus says whether one log given to audit trace verified.
type traceLogStatus struct {
	Dir      string `json:"dir"`
	Origin   string `json:"origin,omitempty"`
	Verified bool   `json:"verified"`
	Records  int    `json:"records"`
	Problem  string `json:"problem,omitempty"`
}

type traceResult struct {
	ID    string           `json:"id"`
	Logs  []traceLogStatus `json:"logs"`
	Chain *audit.Chain     `json:"chain"`
}

func newAuditTraceCmd(a *app) *cobra.Command {
	var (
		keys auditKeyFlags
		logs []string
	)
	cmd := &cobra.Command{
		Use:   "trace TXN|TRACEPARENT DIR...",
		Short: "Print one task's execution chain, merged from the logs of several sidecars and the controller",
		Long: `Merge the audit logs in DIR... (and --log DIR) and print one task's execution chain in time order: the agent,
the delegated user, each call and its decision with the deciding policy ids, and each remediation (a revocation or
risk change applied by a sidecar, or by the controller for a Security Event Token) with its cause. The task is named
by its Txn-Token txn, a W3C traceparent or a trace id; calls that share a txn or a trace id with the chain join it.

Each log is verified first (as 'audit verify', with --bundle or --key). A log that does not verify is still
read as far as its records parse, its steps are marked, and the command exits 1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: a.run(func(_ *cobra.Command, args []string) error {
			id := args[0]
			dirs := slices.Concat(args[1:], logs)
			if len(dirs) == 0 {
				return usagef("give at least one log directory (DIR... or --log DIR)")
			}
			res := traceResult{ID: id}
			var tls []audit.TraceLog
			unverified := map[string]bool{}
			for _, dir := range dirs {
				st := traceLogStatus{Dir: dir, Origin: filepath.Base(dir)}
				v, err := keys.verifier(dir)
				if err == nil {
					st.Origin = v.Name()
					if _, err = audit.Verify(dir, v); err == nil {
						st.Verified = true
					}
				}
				if err != nil {
					st.Problem = err.Error()
					unverified[st.Origin] = true
				}
				recs, rerr := audit.ReadRecords(dir)
				if rerr != nil && st.Problem == "" {
					st.Problem = rerr.Error()
				}
				st.Records = len(recs)
				res.Logs = append(res.Logs, st)
				tls = append(tls, audit.TraceLog{Name: st.Origin, Records: recs})
			}
			res.Chain = audit.Trace(id, tls)
			if err := a.print(nil, res, func(t *tabwriter.Writer) { printTrace(t, res, unverified) }); err != nil {
				return err
			}
			if len(unverified) > 0 {
				return errRefused
			}
			return nil
		}),
	}
	keys.add(cmd)
	cmd.Flags().StringArrayVar(&logs, "log", nil, "a log directory (repeat for several; as well as DIR...)")
	return cmd
}

func printTrace(t *tabwriter.Writer, res traceResult, unverified map[string]bool) {
	for _, l := range res.Logs {
		if l.Verified {
			fmt.Fprintf(t, "log\t%s\t%s\tverified, %d records\n", l.Origin, l.Dir, l.Records)
		} else {
			fmt.Fprintf(t, "log\t%s\t%s\tNOT VERIFIED (%d records read): %s\n", l.Origin, l.Dir, l.Records, l.Problem)
		}
	}
	c := res.Chain
	if len(c.Steps) == 0 {
		fmt.Fprintf(t, "no record carries %s\n", res.ID)
		return
	}
	fmt.Fprintf(t, "task\ttxn %s\ttrace %s\n", strings.Join(c.Txns, ","), strings.Join(c.TraceIDs, ","))
	fmt.Fprintf(t, "agent\t%s\n", c.Agent)
	if len(c.Subjects) > 0 {
		fmt.Fprintf(t, "on behalf of\t%s\n", strings.Join(c.Subjects, ", "))
	}
	fmt.Fprintln(t)
	fmt.Fprintln(t, "#\tTIME\tLOG\tEVENT\tFROM\tTO\tCALL\tDECISION\tPOLICIES\tREASON / CAUSE")
	for i, s := range c.Steps {
		r := s.Record
		mark := ""
		if unverified[s.Log] {
			mark = " (!)"
		}
		var event, from, to, call, decision, policies, why string
		switch r.Kind {
		case audit.KindDecision:
			event, from, to, decision = r.Direction, r.Agent, cmpOr(r.Tool, r.Host), r.Decision
			call = strings.TrimSpace(r.Method + " " + r.Host + r.Path)
			if r.MCPMethod != "" {
				call += " mcp:" + strings.TrimSpace(r.MCPMethod+" "+r.MCPTool)
			}
			policies = strings.Join(r.PolicyIDs, ",")
			why = r.Reason
			if r.RevocationID != "" {
				why += " (revocation " + r.RevocationID + ")"
			}
		default:
			event = string(r.Kind) + " " + r.Action
			from, to = r.Actor, cmpOr(r.Subject, r.Agent)
			decision = r.RevocationID
			why = causeOf(r)
		}
		fmt.Fprintf(t, "%d\t%s\t%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, r.Time.UTC().Format(time.RFC3339Nano), s.Log, mark,
			event, dash(from), dash(to), dash(call), dash(decision), dash(policies), dash(why))
	}
}

// causeOf is a remediation's reason and what caused it: the event type and the SET's jti, or the admin.
func causeOf(r *audit.Record) string {
	var parts []string
	if r.Reason != "" {
		parts = append(parts, r.Reason)
	}
	if r.Cause != "" {
		parts = append(parts, "cause "+r.Cause)
	}
	if r.SETJti != "" {
		parts = append(parts, "SET jti "+r.SETJti)
	}
	if r.Risk != "" {
		parts = append(parts, "risk "+r.Risk)
	}
	return strings.Join(parts, "; ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
