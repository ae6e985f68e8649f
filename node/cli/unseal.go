package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/replay/auditlog"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/storage/archive"
)

func newKeysCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create keys"}
	var out string
	auditor := &cobra.Command{
		Use:   "auditor --out DIR",
		Short: "Create an auditor key pair: auditor.pub for the nodes, auditor.key for the auditors only",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, err := proof.GenerateAuditorKey()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			for name, b := range map[string][]byte{"auditor.key": proof.MarshalPrivate(priv), "auditor.pub": proof.MarshalPublic(priv.PublicKey())} {
				f, err := os.OpenFile(filepath.Join(out, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				_, err = f.Write(b)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (auditors only) and %s (set keys.auditor_public_key_file); fingerprint %s\n",
				filepath.Join(out, "auditor.key"), filepath.Join(out, "auditor.pub"), proof.Fingerprint(priv.PublicKey()))
			return err
		},
	}
	auditor.Flags().StringVar(&out, "out", ".", "directory to write auditor.key and auditor.pub to (files must not exist)")
	cmd.AddCommand(auditor)
	return cmd
}

func newUnsealCommand() *cobra.Command {
	var configPath, dataDir, keyFile, auditor, reason string
	cmd := &cobra.Command{
		Use:   "unseal --key auditor.key --auditor NAME --reason TEXT SESSION_ID",
		Short: "Show the raw values behind a session's masked output (auditors only; recorded)",
		Long: `Open the masking proof of a recorded session with the auditor private key and
print, for every masked value, its command, position, rule and raw value.

Unsealing is itself recorded, before anything is shown: an unseal event with the
auditor, the session and the reason goes to the node's audit log
(data_dir/auditlog; list it with 'phigate replay --audit-log --list'), made
durable first. If it cannot be recorded, nothing is shown.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" || auditor == "" || reason == "" {
				return errors.New("--key, --auditor and --reason are required")
			}
			data, err := resolveDataDir(configPath, dataDir)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(keyFile)
			if err != nil {
				return err
			}
			priv, err := proof.ParsePrivate(b)
			if err != nil {
				return err
			}
			// The session is in the node's spool, or shipped to its store:
			// the unsealing, recorded below before anything is read, is
			// the act that decrypts it.
			stores := replay.Union{recordings(data)}
			sf := storeFlags{configPath: configPath, dataDir: data}
			if st, _, err := sf.open(false); err == nil && st != nil {
				stores = append(stores, &archive.ReplayStore{Archive: &archive.Archive{Store: st}, Auditor: priv,
					Record: func(context.Context, string) (func(int, error), error) { return func(int, error) {}, nil }})
			}
			audit, err := auditlog.Open(auditlog.Config{Dir: filepath.Join(data, node.AuditLogSubdir)})
			if err != nil {
				return err
			}
			_, err = audit.Unseal(cmd.Context(), cmd.OutOrStdout(), stores,
				auditlog.Request{Session: args[0], Auditor: auditor, Reason: reason, Key: priv})
			return errors.Join(err, audit.Close())
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the node's YAML configuration (to find its data directory)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory (instead of --config)")
	cmd.Flags().StringVar(&keyFile, "key", "", "the auditor private key (auditor.key)")
	cmd.Flags().StringVar(&auditor, "auditor", "", "who is unsealing (recorded)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	return cmd
}

// resolveDataDir finds the node's data directory from a config file or a flag.
func resolveDataDir(configPath, dataDir string) (string, error) {
	switch {
	case configPath != "" && dataDir != "":
		return "", errors.New("give --config or --data-dir, not both")
	case configPath != "":
		cfg, err := node.LoadConfig(configPath)
		if err != nil {
			return "", err
		}
		return node.DataDir(cfg), nil
	case dataDir != "":
		return dataDir, nil
	}
	return node.DataDir(&node.Config{}), nil
}
