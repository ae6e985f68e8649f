package cli

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage/spool"
)

func newReplayCommand() *cobra.Command {
	var configPath, dataDir string
	var asJSON, list, auditLog bool
	cmd := &cobra.Command{
		Use:   "replay [SESSION_ID]",
		Short: "Verify a recorded session and print its trail",
		Long: `Verify the hash chain of a recorded session while printing it for a person
(or as NDJSON with --json, one event per line exactly as recorded). A modified,
removed, reordered or truncated event is reported with the index of the event
where the chain breaks, and the exit status is 2.

The recordings are found in the node's data directory: give --config (the
node's configuration file) or --data-dir. --list lists every session with its
status (closed, open, broken).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := resolveDataDir(configPath, dataDir)
			if err != nil {
				return err
			}
			store := recordings(data)
			if auditLog {
				store = spool.DirStore{Dir: filepath.Join(data, node.AuditLogSubdir)}
			}
			out := cmd.OutOrStdout()
			if list {
				if len(args) > 0 {
					return errors.New("--list takes no session id")
				}
				sessions, err := replay.List(cmd.Context(), store)
				if err != nil {
					return err
				}
				return replay.PrintList(out, sessions, asJSON)
			}
			if len(args) != 1 {
				return errors.New("name a session id, or use --list")
			}
			err = replay.PrintSession(cmd.Context(), out, store, args[0], replay.Options{JSON: asJSON})
			var ce *record.ChainError
			if errors.As(err, &ce) {
				return exitError{code: 2, err: fmt.Errorf("session %s: chain broken at event %d: %s", args[0], ce.Index, ce.Reason)}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the node's YAML configuration (to find its data directory)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory (instead of --config)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print NDJSON: one recorded event per line")
	cmd.Flags().BoolVar(&list, "list", false, "list the recorded sessions")
	cmd.Flags().BoolVar(&auditLog, "audit-log", false, "read the auditors' log (unsealings) instead of the sessions")
	return cmd
}

// The node's spool directory is where replay reads recordings today.
var _ replay.Store = spool.DirStore{}

// recordings is the store of the node's recorded sessions under the data
// directory data.
func recordings(data string) replay.Store {
	return spool.DirStore{Dir: filepath.Join(data, node.RecordingsSubdir)}
}
