// Command synth prints the synthetic clinic (schema and data, as psql input)
// or loads it into a database: for the demo and for trying maskers by hand.
//
//	go run ./internal/synth/cmd/synth -n 100 | psql "$DSN"
//	go run ./internal/synth/cmd/synth -n 100 -dsn "$DSN"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/phigate/phigate/internal/synth"
)

func main() {
	n := flag.Int("n", 100, "number of patients")
	seed := flag.Int64("seed", synth.DefaultSeed, "generator seed: the same seed gives the same data")
	dsn := flag.String("dsn", "", "load into this database (which must not have the tables) instead of printing SQL")
	schemaOnly := flag.Bool("schema", false, "print only the DDL")
	flag.Parse()
	if err := run(*n, *seed, *dsn, *schemaOnly); err != nil {
		fmt.Fprintln(os.Stderr, "synth:", err)
		os.Exit(1)
	}
}

func run(n int, seed int64, dsn string, schemaOnly bool) error {
	if dsn != "" {
		return synth.LoadSeed(context.Background(), dsn, n, seed)
	}
	if _, err := os.Stdout.WriteString(synth.Schema()); err != nil || schemaOnly {
		return err
	}
	return synth.WriteData(os.Stdout, n, seed)
}
