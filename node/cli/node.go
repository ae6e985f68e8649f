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
	var configPath, joinToken string
	var join []string
	cmd := &cobra.Command{
		Use:   "node --config FILE [--join ADDR --join-token T]",
		Short: "Run a phigate node",
		Long: `Run a phigate node: listen for agents' PostgreSQL connections, authenticate
their tokens, enforce the policy, mask results and record every command.
On first start it creates what the configuration leaves to the data
directory (a development certificate, a pseudonym key, a development auditor
key pair).

The node is a member of a cluster. Without --join (or cluster.join) it
bootstraps a new one on first start, with the configuration's policy sections
as the cluster's first policy revision; with --join ADDR (another node's
node-to-node API, its cluster.api) and --join-token T (from "phigate cluster
join-token") it joins that cluster. Restarted with its data directory, it
rejoins as the member it was. The policy in force is the cluster's: change it
with "phigate policy apply".

SIGHUP reloads the TLS certificate from the file (policy sections there are
only the bootstrap policy: the log says so if they changed). SIGINT or SIGTERM
drains: the node stops accepting, lets open sessions finish for up to
limits.drain_timeout, then ends the rest (each records its end) and leaves
gossip.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := node.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), cfg.Log.Level, cfg.Log.Format)
			if err != nil {
				return err
			}
			if len(join) > 0 {
				cfg.Cluster.Join = join
			}
			if err := node.Init(cfg, log); err != nil {
				return err
			}
			n, err := node.New(cfg, log)
			if err != nil {
				return err
			}
			if joinToken == "" {
				joinToken = os.Getenv("PHIGATE_JOIN_TOKEN")
			}
			n.SetJoinToken(joinToken)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go reloadOnHangup(ctx, hup, n, configPath, log)
			err = n.Run(ctx)
			switch {
			case errors.Is(err, node.ErrLeft):
				log.Info("left the cluster; stopped")
				return nil
			case err != nil && !errors.Is(err, context.Canceled):
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (see examples/phigate.yaml)")
	cmd.Flags().StringSliceVar(&join, "join", nil, "node-to-node API address (HOST:PORT) of a node of the cluster to join, on first start (overrides cluster.join)")
	cmd.Flags().StringVar(&joinToken, "join-token", "", "the token to join with (phigate cluster join-token; env PHIGATE_JOIN_TOKEN)")
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
