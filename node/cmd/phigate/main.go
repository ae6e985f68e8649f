// Command phigate is the gateway's single binary. Its commands:
//
//	phigate node            run a node (reloads its configuration on SIGHUP)
//	phigate replay          verify recorded sessions and print them
//	phigate mask            find and mask PHI in JSON Lines from stdin
//	phigate token new|hash  make identity tokens and their configuration hashes
//	phigate keys auditor    create the auditor key pair for masking proofs
//	phigate unseal          show the raw values behind a session's masked output (recorded first)
//	phigate resource check  report where an upstream role can do more than its grants
//	phigate version         print the version
//
// The commands live in node/cli, where they take their arguments and streams
// as values so they can be tested without a process; main passes its own.
package main

import (
	"context"
	"os"

	"github.com/phigate/phigate/node/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
