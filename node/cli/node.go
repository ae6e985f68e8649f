package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
)

func newNodeCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "node --config FILE",
		Short: "Run a phigate node",
		Long: `Run a phigate node: listen for agents' PostgreSQL connections, authenticate
their tokens, enforce the policy, mask results and record every command.
On first start it creates what the configuration leaves to the data
directory (a development certificate, a pseudonym key, a development auditor
key pair).

SIGHUP reloads identities, resources, grants, masking profiles, keys and the
TLS certificate from the file: sessions the new state no longer admits end,
recorded; the others go on. A file that does not load or validate changes
nothing (the log says why). SIGINT or SIGTERM stops the node cleanly: every
open session records its end first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := node.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.Log.Level)
			if err != nil {
				return err
			}
			if err := node.Init(cfg, log); err != nil {
				return err
			}
			n, err := node.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go reloadOnHangup(ctx, hup, n, configPath, log)
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see examples/phigate.yaml)")
	return cmd
}

// reloadOnHangup reloads the node's state from its file at each SIGHUP
// until ctx ends.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, n *node.Node, path string, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, err := node.LoadConfig(path)
		if err == nil {
			_, err = n.Reload(cfg)
		}
		if err != nil {
			log.Error("reload refused; the node runs on with its current state", "revision", n.Revision(), "err", err)
		}
	}
}
