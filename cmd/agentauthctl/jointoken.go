package main

import (
	"encoding/json"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/pkg/controller"
)

func newJoinTokenCmd(a *app) *cobra.Command {
	var req controller.JoinTokenRequest
	cmd := &cobra.Command{
		Use:   "join-token --spiffe-id ID",
		Short: "Create a one-time join token for a workload",
		Long: `Create a one-time join token with which a sidecar obtains its first credentials for a SPIFFE ID. The token
is shown once (the controller stores only its hash); -o json gives it to a script as .token.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if req.SPIFFEID == "" {
				return usagef("--spiffe-id is required")
			}
			b, err := a.call(cmd.Context(), http.MethodPost, "/v1/join-tokens", req)
			if err != nil {
				return err
			}
			var ans controller.JoinTokenResponse
			if err := json.Unmarshal(b, &ans); err != nil {
				return err
			}
			return a.print(b, nil, func(t *tabwriter.Writer) {
				row(t, "TOKEN", "SPIFFE ID", "EXPIRES")
				row(t, ans.Token, ans.SPIFFEID, ts(ans.ExpiresAt))
			})
		}),
	}
	cmd.Flags().StringVar(&req.SPIFFEID, "spiffe-id", "", "the workload's SPIFFE ID (required)")
	cmd.Flags().DurationVar(&req.TTL, "ttl", time.Hour, "how long the token may be used")
	return cmd
}
