package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// hostsWrapper returns the command prefix that runs a suite's tests with
// its CI's extra /etc/hosts names, or nil (and why) when that cannot be
// done here.
//
// The system's /etc/hosts is never edited: the tests run in a private mount
// namespace (unshare --mount, which needs root, as `make test` already
// does for its packages) where a copy with the extra names is bind-mounted
// over it. Both legs run the same way. Without it, the tests that connect
// to those names fail in both legs and so are not compared.
func (r *suiteRun) hostsWrapper(ctx context.Context) ([]string, string) {
	if len(r.Hosts) == 0 {
		return nil, ""
	}
	orig, err := os.ReadFile("/etc/hosts")
	if err != nil {
		return nil, err.Error()
	}
	hosts := filepath.Join(r.Dir, "hosts")
	extra := fmt.Sprintf("\n# added for %s's tests, as its CI does\n127.0.0.1 %s\n", r.Name, strings.Join(r.Hosts, " "))
	if err := os.WriteFile(hosts, append(orig, extra...), 0o644); err != nil {
		return nil, err.Error()
	}
	script := `mount --bind "$0" /etc/hosts && exec "$@"`
	probe := exec.CommandContext(ctx, "unshare", "--mount", "--", "sh", "-c", script, hosts, "getent", "hosts", r.Hosts[0])
	if out, err := probe.CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("unshare --mount with a bind-mounted /etc/hosts failed (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	return []string{"unshare", "--mount", "--", "sh", "-c", script, hosts}, ""
}
