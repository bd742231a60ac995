package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/mod/sumdb/note"

	"github.com/agentauth/agentauth/pkg/audit"
)

// auditKeyFlags say how the audit commands find the checkpoint key: given outright, or certified by the sidecar's
// SVID (the log directory's key certificate) and checked against a trust bundle.
type auditKeyFlags struct {
	key, keyFile, bundle string
}

func (k *auditKeyFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&k.key, "key", "", "checkpoint verifier key (name+hash+data)")
	f.StringVar(&k.keyFile, "key-file", "", "file holding the checkpoint verifier key")
	f.StringVar(&k.bundle, "bundle", "", "trust bundle (PEM): accept the key the log directory's "+audit.KeyCertFile+" certifies")
}

func (k *auditKeyFlags) verifier(dir string) (note.Verifier, error) {
	switch {
	case k.key != "":
		return audit.NewVerifier(k.key)
	case k.keyFile != "":
		b, err := os.ReadFile(k.keyFile)
		if err != nil {
			return nil, err
		}
		return audit.NewVerifier(string(b))
	case k.bundle != "" && dir != "":
		pemBytes, err := os.ReadFile(k.bundle)
		if err != nil {
			return nil, err
		}
		roots, err := parsePEMCerts(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("--bundle %s: %w", k.bundle, err)
		}
		cert, err := os.ReadFile(filepath.Join(dir, audit.KeyCertFile))
		if err != nil {
			return nil, err
		}
		v, _, err := audit.VerifyKeyCertificate(cert, anyDomain(roots))
		return v, err
	}
	return nil, usagef("give the checkpoint key: --key, --key-file or --bundle")
}

func parsePEMCerts(b []byte) ([]*x509.Certificate, error) {
	b2, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString("bundle.invalid"), b)
	if err != nil {
		return nil, err
	}
	return b2.X509Authorities(), nil
}

// anyDomain serves the operator's bundle file for whichever trust domain the SVID claims: the file is what the
// operator trusts.
type anyDomain []*x509.Certificate

func (a anyDomain) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.FromX509Authorities(td, a), nil
}

func newAuditCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Verify audit logs, prove records are in them, trace a task across them (offline, on files)",
		Args:  noSubcommand,
		RunE:  needSubcommand,
	}
	cmd.AddCommand(newAuditVerifyCmd(a), newAuditProveCmd(a), newAuditCheckProofCmd(a), newAuditTraceCmd(a))
	return cmd
}

type auditVerifyResult struct {
	OK      bool               `json:"ok"`
	Report  *audit.Report      `json:"report,omitempty"`
	Problem *audit.TamperError `json:"problem,omitempty"`
	Error   string             `json:"error,omitempty"`
}

func newAuditVerifyCmd(a *app) *cobra.Command {
	var (
		keys      auditKeyFlags
		witnessed []string
	)
	cmd := &cobra.Command{
		Use:   "verify DIR",
		Short: "Check a log directory (all its rotated files) against its signed checkpoints",
		Long: `Check every record of the log in DIR against the signed checkpoints (DIR/checkpoints and any --witnessed
copies): detects an edited, inserted, deleted, reordered or truncated record and names the first one (index, file,
line). Exit 0 when the log verifies, 1 when it does not.`,
		Args: exactArgs(1, "the log directory"),
		RunE: a.run(func(_ *cobra.Command, args []string) error {
			v, err := keys.verifier(args[0])
			if err != nil {
				return err
			}
			var extra [][]byte
			for _, path := range witnessed {
				b, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				extra = append(extra, b)
			}
			rep, err := audit.Verify(args[0], v, extra...)
			res := auditVerifyResult{OK: err == nil, Report: rep}
			var te *audit.TamperError
			switch {
			case errors.As(err, &te):
				res.Problem = te
			case err != nil:
				res.Error = err.Error()
			}
			if perr := a.print(nil, res, func(t *tabwriter.Writer) {
				switch {
				case te != nil:
					fmt.Fprintf(t, "TAMPERED\trecord %d\t%s\t%s: %s\n", te.Index, te.Pos, te.Kind, te.Detail)
				case err != nil:
					fmt.Fprintf(t, "FAILED\t%v\n", err)
				default:
					fmt.Fprintf(t, "OK\t%d records in %d files\troot %s\n", rep.Records, len(rep.Files), base64.StdEncoding.EncodeToString(rep.Root))
					fmt.Fprintf(t, "\t%d checkpoints\twitnessed up to %d\t(%d records after the last checkpoint)\n", rep.Checkpoints, rep.Witnessed, rep.Records-rep.Witnessed)
					if rep.TornTail != nil {
						fmt.Fprintf(t, "\tpartial last line at %s ignored (a write cut short; never acknowledged)\n", rep.TornTail)
					}
				}
			}); perr != nil {
				return perr
			}
			if err != nil {
				return errRefused
			}
			return nil
		}),
	}
	keys.add(cmd)
	cmd.Flags().StringArrayVar(&witnessed, "witnessed", nil, "a checkpoints file kept elsewhere (repeat for several)")
	return cmd
}

func newAuditProveCmd(a *app) *cobra.Command {
	var (
		keys       auditKeyFlags
		index      uint64
		checkpoint string
	)
	cmd := &cobra.Command{
		Use:   "prove DIR --index N",
		Short: "Print an inclusion proof that record N is in the log, for an auditor who holds only a checkpoint",
		Long: `Print, as JSON, the record, the signed checkpoint (the last one in DIR, or --checkpoint) and the RFC 6962
inclusion proof linking them. 'agentauthctl audit check-proof' (or any RFC 6962 verifier) checks it with the
checkpoint key alone.`,
		Args: exactArgs(1, "the log directory"),
		RunE: a.run(func(_ *cobra.Command, args []string) error {
			v, err := keys.verifier(args[0])
			if err != nil {
				return err
			}
			var cp []byte
			if checkpoint != "" {
				if cp, err = os.ReadFile(checkpoint); err != nil {
					return err
				}
			}
			p, err := audit.Prove(args[0], index, cp, v)
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "%s\n", b)
			return err
		}),
	}
	keys.add(cmd)
	cmd.Flags().Uint64Var(&index, "index", 0, "the record's index")
	cmd.Flags().StringVar(&checkpoint, "checkpoint", "", "a signed checkpoint (one note) to prove against")
	return cmd
}

func newAuditCheckProofCmd(a *app) *cobra.Command {
	var keys auditKeyFlags
	cmd := &cobra.Command{
		Use:   "check-proof FILE",
		Short: "Check an inclusion proof made by 'audit prove' with the checkpoint key alone",
		Args:  exactArgs(1, "the proof file"),
		RunE: a.run(func(_ *cobra.Command, args []string) error {
			v, err := keys.verifier("")
			if err != nil {
				return err
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			p, err := audit.ParseInclusionProof(b)
			if err != nil {
				return err
			}
			if err := audit.VerifyInclusion(p, v); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "OK\trecord %d is in the log of %d records the checkpoint signs\n", p.Index, p.TreeSize)
			return nil
		}),
	}
	keys.add(cmd)
	return cmd
}
