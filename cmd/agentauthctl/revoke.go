package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	agentauthv1 "github.com/agentauth/agentauth/api/agentauth/v1"
	"github.com/agentauth/agentauth/pkg/controller"
)

func newRevokeCmd(a *app) *cobra.Command {
	var req controller.RevokeRequest
	var sessions bool
	cmd := &cobra.Command{
		Use:   "revoke --kind KIND --value VALUE --reason TEXT",
		Short: "End a subject's sessions (--sessions, the default) or disable it (--disable)",
		Long: `Revoke a subject. --sessions (the default, like CAEP session-revoked) refuses its credentials and tokens
issued before now: an agent (kind spiffe) renews and resumes, a user signs in again. With --no-renew an agent's
current credentials renew nothing and it needs a new join token (a stolen key or machine). --disable (like RISC
account-disabled) refuses every credential and token of the subject, old and new, until unrevoke.

A user revocation that can match no one (e.g. an iss none of the token service's user issuers has) is stored, and
the answer carries a warning.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if sessions && req.Disable {
				return usagef("--sessions and --disable exclude each other")
			}
			b, err := a.call(cmd.Context(), http.MethodPost, "/v1/revocations", req)
			if err != nil {
				return err
			}
			// The answer is the revocation, with a "warning" beside its fields when it can match no one.
			var rev agentauthv1.Revocation
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &rev); err != nil {
				return err
			}
			var warn struct {
				Warning string `json:"warning"`
			}
			if err := json.Unmarshal(b, &warn); err != nil {
				return err
			}
			if warn.Warning != "" && a.output == "table" { // -o json|yaml carry it in the answer
				fmt.Fprintf(a.errOut, "warning: %s\n", warn.Warning)
			}
			return a.print(b, nil, func(t *tabwriter.Writer) { revocationTable(t, []*agentauthv1.Revocation{&rev}) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Kind, "kind", "spiffe", "subject kind: "+strings.Join(controller.SubjectKinds, ", "))
	f.StringVar(&req.Value, "value", "", "subject value (SPIFFE ID, email, sub, ...)")
	f.StringVar(&req.Iss, "iss", "", "issuer, for user_iss_sub and jti")
	f.StringVar(&req.Reason, "reason", "", "why (shown in every refusal and audit record)")
	f.BoolVar(&req.NoRenew, "no-renew", false, "kind spiffe: the agent's current credentials renew nothing; it needs a new join token (stolen key or machine)")
	f.BoolVar(&sessions, "sessions", false, "end sessions (the default, like CAEP session-revoked): refuse what was issued before now; new credentials and tokens pass")
	f.BoolVar(&req.Disable, "disable", false, "disable (like RISC account-disabled): refuse every credential and token, old and new, until unrevoke")
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions(controller.SubjectKinds, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func newUnrevokeCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "unrevoke ID",
		Short: "Remove a revocation",
		Args:  exactArgs(1, "the revocation id"),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			_, revs, err := a.liveRevocations(cmd.Context())
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			ids := make([]string, 0, len(revs))
			for _, r := range revs {
				ids = append(ids, r.GetId()+"\t"+r.GetSubject().GetKind()+" "+r.GetSubject().GetValue())
			}
			return ids, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			if _, err := a.call(cmd.Context(), http.MethodDelete, "/v1/revocations/"+url.PathEscape(args[0]), nil); err != nil {
				return err
			}
			return a.print(nil, map[string]string{"removed": args[0]}, func(t *tabwriter.Writer) {
				fmt.Fprintf(t, "revocation %s removed\n", args[0])
			})
		}),
	}
}

func newRevocationsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "revocations",
		Short: "List revocations",
		Args:  cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			raw, revs, err := a.liveRevocations(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(raw, nil, func(t *tabwriter.Writer) { revocationTable(t, revs) })
		}),
	}
}

func revocationTable(t *tabwriter.Writer, revs []*agentauthv1.Revocation) {
	row(t, "ID", "KIND", "VALUE", "ISS", "NOT BEFORE", "EXPIRES", "CAUSE", "REASON")
	for _, r := range revs {
		nb, exp := "withheld", "-"
		if r.GetNotBefore() != nil {
			nb = ts(r.GetNotBefore().AsTime())
		}
		if r.GetExpires() != nil {
			exp = ts(r.GetExpires().AsTime())
		}
		row(t, r.GetId(), r.GetSubject().GetKind(), r.GetSubject().GetValue(), orDash(r.GetSubject().GetIss()), nb, exp,
			orDash(r.GetCause().GetEventType()), r.GetReason())
	}
}
