package cluster

import (
	"context"
	"fmt"
	"io"
)

// Snapshot writes a snapshot of the cluster state as this member has it
// (etcd's own snapshot format: `etcdutl snapshot restore` reads it) to
// w. It holds the policy revisions, node numbers and the session index;
// not the PKI or the secrets, which stay in each node's Dir/pki.
func (m *Member) Snapshot(ctx context.Context, w io.Writer) (int64, error) {
	rc, err := m.client.Maintenance.Snapshot(ctx)
	if err != nil {
		return 0, fmt.Errorf("cluster: snapshot: %w", err)
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return n, fmt.Errorf("cluster: snapshot: %w", err)
	}
	return n, nil
}
