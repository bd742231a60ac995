package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentauth/agentauth/internal/devcreds"
)

func newDevCredentialsCmd(a *app) *cobra.Command {
	opts := devcreds.Options{}
	cmd := &cobra.Command{
		Use:   "dev-credentials --dir DIR --id SPIFFE-ID...",
		Short: "Make a throwaway CA, X.509-SVIDs and WITs for local testing (files source; no controller)",
		Long: `Write a throwaway trust bundle and, for each --id, an X.509-SVID, a WIT-SVID and their keys into a new or
empty directory, and print the identity.files section of a sidecar config for each. For local testing only: the
CA's key is not kept.`,
		Args: cobra.NoArgs,
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if opts.Dir == "" {
				return usagef("--dir is required")
			}
			res, err := devcreds.Write(cmd.Context(), opts)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "# throwaway credentials for local testing; trust bundle: %s, %s\n", res.BundlePEM, res.BundleJSON)
			for _, w := range res.Workloads {
				fmt.Fprintf(a.out, "# %s (%s)\n%s", w.ID, w.YAML, devcreds.IdentityYAML(w.ID.TrustDomain(), w, res))
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&opts.Dir, "dir", "", "new or empty directory for the files (required)")
	f.StringVar(&opts.TrustDomain, "trust-domain", "example.org", "trust domain of the throwaway CA")
	f.DurationVar(&opts.TTL, "ttl", 24*time.Hour, "lifetime of the SVIDs and WITs (at most 24h)")
	f.StringArrayVar(&opts.IDs, "id", nil, "workload SPIFFE ID (repeat for several)")
	f.StringVar(&opts.WITKeyAlg, "wit-key-alg", "ES256", "algorithm of the WITs' workload keys: ES256, or EdDSA (Ed25519; the sidecar then needs identity.witProfile wimse, which the printed sections set)")
	return cmd
}
