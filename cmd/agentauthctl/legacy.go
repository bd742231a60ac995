package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// legacyFlags keeps command lines written for agentauthctl before it moved to cobra working: those spelled long
// flags with one dash (-socket PATH, -kind spiffe), which pflag reads as a run of one-letter flags. A word "-name"
// or "-name=value" where name is a long flag of this tree (more than one letter) becomes "--name"; nothing else
// changes. Flag values are skipped, so "--reason -kind" keeps "-kind" as the reason, and nothing after "--" is
// touched. The documented spelling is "--name"; this is for scripts (see CHANGELOG.md).
func legacyFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{"help": false, "version": false} // name → takes a value; cobra adds these two late
	short := map[string]bool{"h": false, "v": false}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) {
			takesValue := f.NoOptDefVal == "" // bool flags have a NoOptDefVal
			long[f.Name] = takesValue
			if f.Shorthand != "" {
				short[f.Shorthand] = takesValue
			}
		}
		c.LocalFlags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)

	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(out, args[i:]...)
		}
		var takesValue bool
		switch {
		case strings.HasPrefix(arg, "--"):
			name, _, withValue := strings.Cut(arg[2:], "=")
			takesValue = long[name] && !withValue
		case len(arg) == 2 && arg[0] == '-':
			takesValue = short[arg[1:]]
		case len(arg) > 2 && arg[0] == '-':
			name, _, withValue := strings.Cut(arg[1:], "=")
			if v, ok := long[name]; ok && len(name) > 1 {
				arg = "-" + arg
				takesValue = v && !withValue
			}
		}
		out = append(out, arg)
		if takesValue && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
