package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/pkg/controller"
)

func newIdentitiesCmd(a *app) *cobra.Command {
	var expired bool
	cmd := &cobra.Command{
		Use:   "identities",
		Short: "Issued identities (X.509-SVIDs) and join tokens, used or unused, with their expiry",
		Long: `List the X.509-SVIDs the controller's issuer issued that have not expired (with --expired, also the expired
ones still on record, kept for a week), and the join tokens that have not expired, used or unused. A token is
shown by the start of the hash the controller keeps of it: the token itself is never stored.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			path := "/v1/identities"
			if expired {
				path += "?expired=true"
			}
			var ans controller.IdentitiesResponse
			raw, err := a.get(cmd.Context(), path, &ans)
			if err != nil {
				return err
			}
			now := time.Now()
			return a.print(raw, nil, func(t *tabwriter.Writer) {
				row(t, "SPIFFE ID", "SERIAL", "NOT BEFORE", "NOT AFTER", "STATUS")
				for _, i := range ans.Issued {
					status := "valid"
					if !now.Before(i.NotAfter) {
						status = "expired"
					}
					row(t, i.SPIFFEID, i.Serial, ts(i.NotBefore), ts(i.NotAfter), status)
				}
				fmt.Fprintln(t)
				row(t, "JOIN TOKEN", "SPIFFE ID", "EXPIRES", "STATUS")
				for _, jt := range ans.JoinTokens {
					status := "unused"
					if jt.Used {
						status = "used"
						if jt.UsedAt != nil {
							status += " " + ts(*jt.UsedAt)
						}
					}
					row(t, jt.ID, jt.SPIFFEID, ts(jt.ExpiresAt), status)
				}
			})
		}),
	}
	cmd.Flags().BoolVar(&expired, "expired", false, "include expired certificates still on record")
	return cmd
}
