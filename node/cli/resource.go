package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
)

func newResourceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "resource", Short: "Inspect protected resources"}
	var configPath string
	var asJSON bool
	check := &cobra.Command{
		Use:   "check --config FILE NAME",
		Short: "Say what each upstream role of a resource can really do, and where it is stronger than its grants",
		Long: `Log in to the resource with each of its upstream credentials (resources[].roles
and the resource's own user) and read the catalogs: role attributes (superuser,
CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS), membership in predefined roles
(pg_write_server_files, pg_signal_backend, ...), ownership of the database,
schemas, tables, sequences and functions, CREATE and TEMP, write privileges on
tables and sequences, SECURITY DEFINER and volatile functions, large objects,
and whether read roles default to read-only transactions.

Each role is compared with the least access level of the grants that log in
with it: read may only SELECT, write may also INSERT, UPDATE and DELETE, admin
may do anything. "danger" marks a role stronger than that level (the database
would not refuse what the gateway should have refused); "note" is a
recommendation. Passwords are never printed.

Exit status: 0 when nothing dangerous was found, 1 when something was (or the
check could not run), 2 when some role could not be checked.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" {
				return errors.New("--config is required")
			}
			cfg, err := node.LoadConfig(configPath)
			if err != nil {
				return err
			}
			rep, err := node.CheckResource(cmd.Context(), &cfg.Policy, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				err = rep.WriteJSON(cmd.OutOrStdout())
			} else {
				err = rep.WriteText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			switch {
			case rep.Dangers() > 0:
				return exitError{1, fmt.Errorf("resource %s: %d danger findings", args[0], rep.Dangers())}
			case rep.Failed():
				return exitError{2, fmt.Errorf("resource %s: some roles could not be checked", args[0])}
			}
			return nil
		},
	}
	check.Flags().StringVarP(&configPath, "config", "c", "", "a policy file, or a node configuration (its policy sections)")
	check.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.AddCommand(check)
	return cmd
}
