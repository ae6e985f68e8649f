//go:build !phigate_bench

package benchstage

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The product build ignores the environment: no stage can be switched on.
func TestProductBuildHasNoStages(t *testing.T) {
	for _, s := range []string{"relay", "classify", "nofsync"} {
		t.Setenv("PHIGATE_BENCH_STAGE", s)
		if Name != "" || Relay() || NoRecord() || NoFsync() {
			t.Fatalf("stage %q switched something off in the product build", s)
		}
	}
}

// The code that reads the stage is compiled only with the phigate_bench
// tag: the product binary cannot contain it, whatever its environment.
func TestStageReaderOnlyInBenchBuild(t *testing.T) {
	files := func(tags ...string) []string {
		args := append([]string{"list"}, tags...)
		args = append(args, "-f", "{{join .GoFiles \" \"}}", ".")
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	if product := files(); slices.Contains(product, "on.go") || !slices.Contains(product, "off.go") {
		t.Fatalf("product build compiles %v", product)
	}
	if bench := files("-tags", "phigate_bench"); !slices.Contains(bench, "on.go") || slices.Contains(bench, "off.go") {
		t.Fatalf("bench build compiles %v", bench)
	}
}
