package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/pkg/store"
)

func newBackupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the controller's state.db to FILE, and check it",
		Long: `Write a consistent snapshot of the controller's state (policies, revocations, risk, join tokens, issued
certificates) to FILE. The copy is written beside FILE, checked as the controller would open it, and only then
renamed to FILE, so FILE is never a partial or damaged copy. To restore: stop the controller, put the file in place
as dataDir/state.db, start it.`,
		Args: exactArgs(1, "the file to write the backup to"),
		RunE: a.run(func(cmd *cobra.Command, args []string) (err error) {
			out := args[0]
			resp, err := a.send(cmd.Context(), http.MethodGet, "/v1/backup", nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+"-*")
			if err != nil {
				return err
			}
			defer func() {
				if err != nil {
					_ = os.Remove(tmp.Name())
				}
			}()
			n, err := io.Copy(tmp, resp.Body) // a body shorter than its Content-Length is an error here
			if err == nil {
				err = tmp.Sync()
			}
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			if err := store.Verify(tmp.Name()); err != nil {
				return fmt.Errorf("backup: the copy does not check: %w", err)
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			return a.print(nil, map[string]any{"file": out, "bytes": n}, func(t *tabwriter.Writer) {
				fmt.Fprintf(t, "backup of %d bytes written to %s and checked\n", n, out)
			})
		}),
	}
	return cmd
}
