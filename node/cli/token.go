package cli

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/session/identity"
)

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create identity tokens and their configuration hashes"}
	cmd.AddCommand(&cobra.Command{
		Use:   "new",
		Short: "Print a new random token and the token_sha256 to put in the configuration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			tok := "phg_" + base64.RawURLEncoding.EncodeToString(b)
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "token:        %s\ntoken_sha256: %s\n", tok, identity.HashToken(tok))
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "hash",
		Short: "Read a token on standard input and print its token_sha256",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				if err != nil {
					return fmt.Errorf("read token: %w", err)
				}
				return errors.New("empty token")
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), identity.HashToken(line))
			return err
		},
	})
	return cmd
}
