// Package cli holds the phigate command's verbs (cobra). Each verb parses
// its flags and calls into the packages that do the work; none holds logic
// of its own beyond presenting results.
package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
)

// Version is set at build time (-ldflags "-X github.com/phigate/phigate/node/cli.Version=...").
var Version = "dev"

// NewRoot returns the phigate command with every verb.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "phigate",
		Short:         "phigate: the access gateway between agents and protected health information",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	node.Version = Version
	root.AddCommand(newNodeCommand(), newReplayCommand(), newVersionCommand(), newTokenCommand(), newMaskCommand(), newKeysCommand(), newUnsealCommand(), newResourceCommand(), newPolicyCommand(), newClusterCommand(), newApprovalsCommand(), newRecoverCommand(), newAuditCommand())
	return root
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "phigate:", err)
		if e, ok := err.(exitError); ok {
			return e.code
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit code (replay uses 2 for a broken chain).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the phigate version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "phigate", Version)
			return err
		},
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		l = slog.LevelInfo
	case "debug":
		l = slog.LevelDebug
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("unknown log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("unknown log format %q (text or json)", format)
}
