// Command phigate is the gateway's single binary: `phigate node` runs a node,
// `phigate replay` verifies and prints a recorded session, `phigate mask`
// evaluates the masking engine, `phigate token` makes identity tokens.
package main

import (
	"context"
	"os"

	"github.com/phigate/phigate/node/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
