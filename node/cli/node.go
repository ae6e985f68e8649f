package cli

import (
	"context"
	"errors"
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
SIGINT or SIGTERM stops it cleanly: every open session records its end first.`,
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
			n, err := node.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if err := n.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see examples/phigate.yaml)")
	return cmd
}
