// Command agentauthctl administers a running agentauth controller over its admin socket, and answers policy
// dry-run questions, locally or against the live policy set and revocations.
//
//	agentauthctl policy diff policies/*.cedar
//	agentauthctl policy apply policies/*.cedar
//	agentauthctl policy list
//	agentauthctl policy check --dir policies --agent spiffe://example.org/agent/planner --host weather.tools.local --path /forecast
//	agentauthctl policy check --live --agent spiffe://example.org/agent/planner --host weather.tools.local
//	agentauthctl revoke --kind spiffe --value spiffe://example.org/agent/planner --reason "laptop stolen" --no-renew
//	agentauthctl unrevoke admin-3f2a...
//	agentauthctl revocations -o json
//	agentauthctl sidecars
//	agentauthctl identities
//	agentauthctl join-token --spiffe-id spiffe://example.org/agent/planner --ttl 10m
//	agentauthctl backup /var/backups/agentauth/state.db
//	agentauthctl dev-credentials --dir ./dev-creds --trust-domain example.org --id spiffe://example.org/agent/planner
//
// Exit codes: 0 success; 1 a refusal (policy check DENY, the controller said no) or an error; 2 a usage error
// (unknown command or flag, wrong arguments). Help (-h, --help, help) never performs an action and exits 0.
//
// Each command group lives in a file of its own (policy.go, revoke.go, ...) and adds itself to the tree in
// newRootCmd; a new command is a new file and one line there.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/internal/buildinfo"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a refusal or an error
	exitUsage   = 2
)

func main() {
	os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr))
}

// app is what every command shares: the global flags and where output goes.
type app struct {
	socket string
	output string
	out    io.Writer
	errOut io.Writer
	// ran is set when a command's own code starts: errors before that (flags, arguments, unknown commands) are
	// usage errors, errors after it are refusals or failures unless marked as usage errors.
	ran bool
}

// usageError marks an error as the caller's mistake in how the command was called: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errRefused ends a command that already said why it refuses (policy check's DENY): exit 1, no further message.
var errRefused = errors.New("refused")

// execute runs the command line and returns the exit code.
func execute(args []string, out, errOut io.Writer) int {
	a := &app{out: out, errOut: errOut}
	root := newRootCmd(a)
	root.SetArgs(legacyFlags(root, args))
	cmd, err := root.ExecuteC()
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errRefused):
		return exitFailure
	case errors.As(err, &ue) || !a.ran:
		fmt.Fprintf(errOut, "agentauthctl: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintf(errOut, "agentauthctl: %v\n", err)
	return exitFailure
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "agentauthctl",
		Short: "Administer an agentauth controller and dry-run policy",
		Long: `agentauthctl administers a running agentauth controller over its admin socket (whoever can open the
socket administers the controller), and answers policy dry-run questions.

Output is a table by default; -o json or -o yaml prints the full answer for scripts.
Exit codes: 0 success; 1 a refusal (e.g. policy check DENY) or an error; 2 a usage error.`,
		Version:       buildinfo.Read().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noSubcommand,
		RunE:          needSubcommand,
	}
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetVersionTemplate("agentauthctl {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", envOr("AGENTAUTH_ADMIN_SOCKET", "/run/agentauth/admin.sock"),
		"controller admin socket ($AGENTAUTH_ADMIN_SOCKET)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table, json or yaml")
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))

	root.AddCommand(
		newPolicyCmd(a),
		newRevokeCmd(a), newUnrevokeCmd(a), newRevocationsCmd(a),
		newSidecarsCmd(a),
		newIdentitiesCmd(a),
		newJoinTokenCmd(a),
		newDevCredentialsCmd(a),
		newBackupCmd(a),
		newAuditCmd(a),
	)
	return root
}

// run wraps a command's code: it checks the global flags, then marks that the command started (see app.ran).
func (a *app) run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if !isOutputFormat(a.output) {
			return usagef("--output %q: want one of %s", a.output, strings.Join(outputFormats, ", "))
		}
		a.ran = true
		return fn(cmd, args)
	}
}

// noSubcommand is the Args of a command group: any argument is an unknown subcommand (exit 2). Without it, cobra
// would print the group's help and exit 0 for a mistyped subcommand.
func noSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// needSubcommand is the RunE of a command group called alone.
func needSubcommand(cmd *cobra.Command, _ []string) error {
	return usagef("%s needs a command", cmd.CommandPath())
}

// exactArgs is cobra.ExactArgs with a usage error and the argument named.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %d argument(s), %s; got %d", n, what, len(args))
		}
		return nil
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
