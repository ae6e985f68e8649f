package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/storage/blob"
)

func newRecoverCommand() *cobra.Command {
	var deadDir, store, configPath, auditorFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "recover --spool DATA_DIR [--store URL | --config node.yaml]",
		Short: "Ship the recordings of a node that will not come back",
		Long: `Ship everything a stopped node's data directory holds to the store, as that
node: recover its spool (sessions its crash left open are closed with
session.end "recovered"), seal what was not sealed yet (signed with the node's
own key, found in the directory), upload every chunk, manifest and index
entry, and write the node's hourly digests up to the end of the current hour.
It returns once the store confirmed all of it; run it again after a failure
(it continues where it stopped).

The node must not be running. Run it on any machine that can read the data
directory (a disk moved from the dead node) and reach the store, then remove
the node from the cluster (phigate cluster remove), which ends the validity of
its signing key.

The store is --store (file:///dir or s3://BUCKET?endpoint=...; S3 credentials
from PHIGATE_S3_ACCESS_KEY/PHIGATE_S3_SECRET_KEY) or the store section of the
--config given (a running node's configuration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if deadDir == "" {
				return errors.New("--spool is required: the data directory of the node to recover")
			}
			st, err := openStoreFlag(store, configPath)
			if err != nil {
				return err
			}
			rc := node.RecoverConfig{DataDir: deadDir, Store: st,
				Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
			if auditorFile != "" {
				b, err := os.ReadFile(auditorFile)
				if err != nil {
					return err
				}
				if rc.Auditor, err = proof.ParsePublic(b); err != nil {
					return fmt.Errorf("--auditor-public-key: %w", err)
				}
			}
			rep, err := node.Recover(cmd.Context(), rc)
			if rep != nil {
				out := cmd.OutOrStdout()
				if asJSON {
					json.NewEncoder(out).Encode(rep)
				} else {
					fmt.Fprintf(out, "node %s: %d sessions closed at recovery; %d chunks sealed, %d objects uploaded, %d sessions indexed (%d bytes recorded, %d stored)\n",
						rep.Node, len(rep.Recovered), rep.Stats.Sealed, rep.Stats.Uploaded, rep.Stats.Indexed, rep.Stats.RawBytes, rep.Stats.StoredBytes)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&deadDir, "spool", "", "the data directory of the node to recover")
	cmd.Flags().StringVar(&store, "store", "", "the store: file:///dir or s3://BUCKET?endpoint=https://HOST:PORT")
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "a node configuration whose store section names the store")
	cmd.Flags().StringVar(&auditorFile, "auditor-public-key", "", "the auditors' public key (PEM) for sessions not sealed yet; default: the data directory's keys/auditor.pub")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

// openStoreFlag opens the store named by --store, else by the store section
// of --config.
func openStoreFlag(store, configPath string) (blob.Store, error) {
	switch {
	case store != "" && configPath != "":
		return nil, errors.New("give --store or --config, not both")
	case store != "":
		loc, err := blob.ParseLocation(store)
		if err != nil {
			return nil, err
		}
		return blob.Open(loc, blob.CredentialsFromEnv)
	case configPath != "":
		cfg, err := node.LoadConfig(configPath)
		if err != nil {
			return nil, err
		}
		st, _, err := node.OpenStore(cfg)
		return st, err
	}
	return nil, errors.New("--store or --config is required")
}
