package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/pkg/controller"
	"github.com/agentauth/agentauth/pkg/xds/xdsserver"
)

func newSidecarsCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "sidecars",
		Short: "Connected sidecars: each resource type SYNCED, STALE or NACKED against the controller",
		Long: `List the connected sidecars and, per resource type, how the state each one enforces compares with the
controller's (as istioctl proxy-status shows it):

  SYNCED    the sidecar ACKed the controller's current version
  STALE     it holds an older version, or has not yet answered the update it was sent
  NACKED    it rejected the last update (it keeps enforcing its last good state); -o json shows why
  NOT SENT  it has not subscribed to the type yet

A sidecar that is not connected is not listed: it enforces its last state (fail-static); see its /readyz.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			var ans controller.SidecarsResponse
			raw, err := a.get(cmd.Context(), "/v1/sidecars", &ans)
			if err != nil {
				return err
			}
			return a.print(raw, nil, func(t *tabwriter.Writer) {
				if len(ans.Sidecars) == 0 {
					fmt.Fprintln(t, "no sidecars connected")
					return
				}
				head := []string{"SIDECAR", "ADDRESS", "CONNECTED"}
				for _, typ := range ans.Sidecars[0].Types {
					head = append(head, upper(typ.Type))
				}
				row(t, head...)
				for _, s := range ans.Sidecars {
					cells := []string{s.ID, s.Address, ts(s.ConnectedSince)}
					for _, st := range s.Types {
						cells = append(cells, syncCell(st, ans.Versions[st.Type]))
					}
					row(t, cells...)
				}
			})
		}),
	}
}

// syncCell is a type's status with the versions that explain it: "SYNCED (12.7)", "STALE (12.6 < 12.7)".
func syncCell(st controller.TypeStatus, current string) string {
	switch st.Status {
	case xdsserver.Synced:
		return fmt.Sprintf("%s (%s)", st.Status, current)
	case xdsserver.NACKed:
		return fmt.Sprintf("%s (%s)", st.Status, st.NACKed)
	case xdsserver.Stale:
		return fmt.Sprintf("%s (%s < %s)", st.Status, orDash(st.Acked), current)
	}
	return string(st.Status)
}

// upper turns a type name into a column heading: TrustBundle → TRUSTBUNDLE.
func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
