package node_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/spool"
)

// recordingStore reads the recordings of the node whose data directory is
// data wherever they are: still in its spool, or shipped to its default
// store (data/store) and opened with the development auditor key Init
// made in data/keys.
func recordingStore(t *testing.T, data string) replay.Store {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "keys", "auditor.key"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := proof.ParsePrivate(b)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := blob.NewFS(filepath.Join(data, node.StoreSubdir))
	if err != nil {
		t.Fatal(err)
	}
	return replay.Union{
		spool.DirStore{Dir: filepath.Join(data, node.RecordingsSubdir)},
		&archive.ReplayStore{Archive: &archive.Archive{Store: fs}, Auditor: priv,
			Record: func(context.Context, string) (func(int, error), error) { return func(int, error) {}, nil }},
	}
}
