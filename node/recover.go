package node

import (
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/ship"
	"github.com/phigate/phigate/storage/spool"
)

// RecoverConfig says whose recordings Recover ships, and where to.
type RecoverConfig struct {
	// DataDir is the data directory of a node that will not come back:
	// its spool (recordings/), its shipper's ledger and segments (ship/)
	// and its signing key (keys/).
	DataDir string
	// Store is where its recordings go (the cluster's store).
	Store blob.Store
	// Auditor is the auditors' public key that sessions not sealed yet are
	// sealed to. Nil: DataDir/keys/auditor.pub.
	Auditor *ecdh.PublicKey
	// Retention of the objects written.
	Retention blob.PutOptions
	Logger    *slog.Logger
}

// RecoverReport is what Recover did.
type RecoverReport struct {
	Node      string     // the node whose spool it was
	Recovered []string   // sessions its crash left open, closed now (session.end "recovered")
	Stats     ship.Stats // what was sealed and uploaded
}

// Recover ships everything the data directory of a node that will not come
// back holds, as that node (its chunks and digests are signed with its own
// key, found in the directory): it recovers the spool (closing the
// sessions a crash left open), seals what was not sealed, uploads every
// object, writes the node's digests up to the end of the current hour, and
// returns once the store confirmed all of it. The node must not be running
// (the spool is locked). Run it before `phigate cluster remove`, which ends
// the validity of the node's key.
func Recover(ctx context.Context, cfg RecoverConfig) (*RecoverReport, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pubJSON, err := os.ReadFile(filepath.Join(cfg.DataDir, "keys", signingPubFile))
	if err != nil {
		return nil, fmt.Errorf("node: recover: the node's signing key: %w", err)
	}
	var pk archive.PublishedKey
	if err := json.Unmarshal(pubJSON, &pk); err != nil || pk.Node == "" {
		return nil, fmt.Errorf("node: recover: %s does not name the node", signingPubFile)
	}
	signer, pub, err := SigningKey(cfg.DataDir, pk.Node, time.Now())
	if err != nil {
		return nil, err
	}
	auditor := cfg.Auditor
	if auditor == nil {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, "keys", "auditor.pub"))
		if err != nil {
			return nil, fmt.Errorf("node: recover: no auditors' public key given and none in the data directory: %w", err)
		}
		if auditor, err = proof.ParsePublic(b); err != nil {
			return nil, fmt.Errorf("node: recover: auditors' public key: %w", err)
		}
	}
	sp, err := spool.Open(spool.Config{Dir: filepath.Join(cfg.DataDir, RecordingsSubdir), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("node: recover: %w", err)
	}
	defer sp.Close()
	spCtx, stopSp := context.WithCancel(context.Background())
	spDone := make(chan error, 1)
	go func() { spDone <- sp.Run(spCtx) }()
	defer func() { stopSp(); <-spDone }()

	rep := &RecoverReport{Node: pk.Node, Recovered: sp.Recovered()}
	rec := session.NewRecorder(sp, pk.Node)
	for _, id := range rep.Recovered {
		if err := rec.CloseRecovered(ctx, id); err != nil {
			return nil, fmt.Errorf("node: recover: close session %s: %w", id, err)
		}
	}
	sh, err := ship.New(ship.Config{Node: pk.Node, Dir: filepath.Join(cfg.DataDir, ShipSubdir), Spool: sp, Store: cfg.Store,
		Signer: signer, Auditor: func() *ecdh.PublicKey { return auditor }, PublishedKey: pub,
		Retention: func(string) blob.PutOptions { return cfg.Retention }, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("node: recover: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sh.Run(runCtx) }()
	wait := func() error {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for !sh.Drained() {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case err := <-done:
				done <- err
				if err == nil {
					err = errors.New("the shipper stopped")
				}
				return err
			case <-t.C:
			}
		}
		return nil
	}
	err = wait()
	if err == nil {
		if err = sh.Finish(); err == nil {
			err = wait()
		}
	}
	stop()
	if rerr := <-done; err == nil {
		err = rerr
	}
	rep.Stats = sh.Stats()
	if err != nil {
		return rep, fmt.Errorf("node: recover: %w", err)
	}
	return rep, nil
}
