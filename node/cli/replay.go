package cli

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/replay"
	"github.com/phigate/phigate/replay/auditlog"
	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/spool"
)

type replayFlags struct {
	configPath, dataDir     string
	asJSON, list, auditLog  bool
	store                   storeFlags
	auditorKey, who, reason string
	from, to                string
}

func newReplayCommand() *cobra.Command {
	var f replayFlags
	cmd := &cobra.Command{
		Use:   "replay [SESSION_ID]",
		Short: "Verify a recorded session and print its trail",
		Long: `Verify the hash chain of a recorded session while printing it for a person
(or as NDJSON with --json, one event per line exactly as recorded). A modified,
removed, reordered or truncated event is reported with the index of the event
where the chain breaks, and the exit status is 2.

The recordings are found in the node's data directory (its spool: give --config,
the node's configuration file, or --data-dir), and in its store once shipped
(store.location of --config, or DataDir/store; or --store URL to read a store
only). A session read from the store is decrypted with the auditor private key
(--auditor-key; default DataDir/keys/auditor.key, the development key) and the
decryption is recorded first in the audit log (data_dir/auditlog; list it with
--audit-log --list): if it cannot be recorded, nothing is decrypted.
Replay checks the record chain and the chunk chain; signatures, digests and the
index are what 'phigate audit verify' checks.

--list lists the sessions: those in the spool with their verified status, and
those the store's index lists in [--from, --to) (default: the last 24 hours),
from the index only (neither decrypted nor verified).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReplay(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f, args)
		},
	}
	cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "the node's YAML configuration (to find its data directory and store)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "the node's data directory (instead of --config)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print NDJSON: one recorded event per line")
	cmd.Flags().BoolVar(&f.list, "list", false, "list the recorded sessions")
	cmd.Flags().BoolVar(&f.auditLog, "audit-log", false, "read the auditors' log (unsealings and decryptions) instead of the sessions")
	f.store.add(cmd, false)
	cmd.Flags().StringVar(&f.auditorKey, "auditor-key", "", "the auditor private key, to decrypt sessions read from the store (default: DataDir/keys/auditor.key)")
	cmd.Flags().StringVar(&f.who, "auditor", "", "who decrypts, recorded in the audit log (default: the operating-system user)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, recorded in the audit log")
	cmd.Flags().StringVar(&f.from, "from", "", "--list: start of the store's range (RFC 3339 or YYYY-MM-DD; default: 24 hours before --to)")
	cmd.Flags().StringVar(&f.to, "to", "", "--list: end of the store's range, excluded (default: now)")
	return cmd
}

func runReplay(ctx context.Context, out, errOut io.Writer, f replayFlags, args []string) error {
	data, err := resolveDataDir(f.configPath, f.dataDir)
	if err != nil {
		return err
	}
	f.store.configPath, f.store.dataDir = f.configPath, data
	onlyStore := f.store.location != "" || os.Getenv("PHIGATE_STORE") != ""
	if f.auditLog {
		if onlyStore {
			return errors.New("--audit-log reads the node's data directory, not a store")
		}
		return replaySpool(ctx, out, spool.DirStore{Dir: filepath.Join(data, node.AuditLogSubdir)}, f, args)
	}
	st, loc, storeErr := f.store.open(onlyStore)
	if storeErr != nil {
		if onlyStore {
			return storeErr
		}
		// The node's store cannot be read from here: the spool still can.
		st = nil
	}
	if f.list {
		if len(args) > 0 {
			return errors.New("--list takes no session id")
		}
		if storeErr != nil {
			fmt.Fprintf(errOut, "the node's store %s was not read: %v\n", loc, storeErr)
		}
		return listSessions(ctx, out, errOut, f, data, onlyStore, st)
	}
	if len(args) != 1 {
		return errors.New("name a session id, or use --list")
	}
	var stores replay.Union
	if !onlyStore {
		stores = append(stores, recordings(data))
	}
	d := &decryption{dataDir: data, location: loc.String(), who: f.who, reason: f.reason}
	defer d.close()
	if st != nil {
		stores = append(stores, &archive.ReplayStore{Archive: &archive.Archive{Store: st}, Auditor: nil, Record: d.begin})
		key, err := auditorKey(f.auditorKey, data)
		switch {
		case err != nil && f.auditorKey != "":
			return err
		case err == nil:
			stores[len(stores)-1].(*archive.ReplayStore).Auditor = key
		}
	}
	err = replay.PrintSession(ctx, out, stores, args[0], replay.Options{JSON: f.asJSON})
	err = errors.Join(err, d.end(ctx, err))
	var ce *record.ChainError
	if errors.As(err, &ce) {
		return exitError{code: 2, err: fmt.Errorf("session %s: chain broken at event %d: %s", args[0], ce.Index, ce.Reason)}
	}
	switch {
	case errors.Is(err, storage.ErrNotFound) && storeErr != nil:
		err = fmt.Errorf("%w (not in the spool; the node's store %s could not be read: %v)", err, loc, storeErr)
	case errors.Is(err, storage.ErrNotFound) && st == nil && !onlyStore:
		err = fmt.Errorf("%w (not in the spool; no store at %s)", err, loc)
	}
	return err
}

// replaySpool is replay of a spool directory alone.
func replaySpool(ctx context.Context, out io.Writer, store replay.Store, f replayFlags, args []string) error {
	if f.list {
		if len(args) > 0 {
			return errors.New("--list takes no session id")
		}
		sessions, err := replay.List(ctx, store)
		if err != nil {
			return err
		}
		return replay.PrintList(out, sessions, f.asJSON)
	}
	if len(args) != 1 {
		return errors.New("name a session id, or use --list")
	}
	err := replay.PrintSession(ctx, out, store, args[0], replay.Options{JSON: f.asJSON})
	var ce *record.ChainError
	if errors.As(err, &ce) {
		return exitError{code: 2, err: fmt.Errorf("session %s: chain broken at event %d: %s", args[0], ce.Index, ce.Reason)}
	}
	return err
}

// listSessions lists the spool's sessions (verified) and the store's index
// over the range (as the index says), a session in both once, by id.
func listSessions(ctx context.Context, out, errOut io.Writer, f replayFlags, data string, onlyStore bool, st blob.Store) error {
	var sessions []replay.SessionInfo
	if !onlyStore {
		s, err := replay.List(ctx, recordings(data))
		if err != nil {
			return err
		}
		sessions = s
	}
	if st != nil {
		from, err := parseTime("from", f.from)
		if err != nil {
			return err
		}
		to, err := parseTime("to", f.to)
		if err != nil {
			return err
		}
		if to.IsZero() {
			to = time.Now().UTC()
		}
		if from.IsZero() {
			from = to.Add(-24 * time.Hour)
		}
		entries, err := (&archive.Archive{Store: st}).Sessions(ctx, from, to)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, s := range sessions {
			seen[s.ID] = true
		}
		for _, e := range entries {
			if seen[e.Session] {
				continue
			}
			reason := e.Reason
			if e.State == archive.StateRecovered && reason == "" {
				reason = archive.StateRecovered
			}
			sessions = append(sessions, replay.SessionInfo{ID: e.Session, Start: e.Start, End: e.End, Identity: e.Identity,
				Resource: e.Resource, Events: e.Events, Bytes: e.RawBytes + int64(len(record.Magic)), Status: replay.StatusClosed, Reason: reason})
		}
		sort.Slice(sessions, func(i, j int) bool { return sessions[i].ID < sessions[j].ID })
		if !f.asJSON && len(entries) > 0 {
			fmt.Fprintf(errOut, "sessions shipped to the store are listed from its index (%s .. %s), neither decrypted nor verified: 'phigate audit verify' checks them\n",
				from.Format(time.RFC3339), to.Format(time.RFC3339))
		}
	}
	return replay.PrintList(out, sessions, f.asJSON)
}

// auditorKey reads the auditor private key from path, or the data
// directory's development key.
func auditorKey(path, data string) (*ecdh.PrivateKey, error) {
	if path == "" {
		path = filepath.Join(data, "keys", "auditor.key")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auditor key: %w", err)
	}
	return proof.ParsePrivate(b)
}

// decryption records in the audit log each session the store decrypts:
// the log is opened when the first one is about to be, its intent made
// durable before (archive.ReplayStore's Record), its outcome after.
type decryption struct {
	dataDir, location, who, reason string

	log    *auditlog.Log
	act    *auditlog.Act
	events int
}

func (d *decryption) begin(ctx context.Context, session string) (func(int, error), error) {
	if d.act != nil {
		return nil, errors.New("one decryption at a time")
	}
	if d.log == nil {
		l, err := auditlog.Open(auditlog.Config{Dir: filepath.Join(d.dataDir, node.AuditLogSubdir)})
		if err != nil {
			return nil, err
		}
		d.log = l
	}
	who := d.who
	if who == "" {
		if u, err := user.Current(); err == nil {
			who = u.Username
		}
	}
	act, err := d.log.Begin(ctx, auditlog.Request{Session: session, Auditor: who, Reason: d.reason,
		Act: "decrypt for replay, from " + d.location})
	if err != nil {
		return nil, err
	}
	d.act = act
	return func(events int, _ error) { d.events = events }, nil
}

// end records the outcome of the decryption begun, if any.
func (d *decryption) end(ctx context.Context, failure error) error {
	if d.act == nil {
		return nil
	}
	act := d.act
	d.act = nil
	return act.End(ctx, d.events, failure)
}

func (d *decryption) close() {
	if d.log != nil {
		d.log.Close()
	}
}

// The node's spool directory and its store are where replay reads
// recordings.
var (
	_ replay.Store = spool.DirStore{}
	_ replay.Store = (*archive.ReplayStore)(nil)
)

// recordings is the store of the node's recorded sessions under the data
// directory data.
func recordings(data string) replay.Store {
	return spool.DirStore{Dir: filepath.Join(data, node.RecordingsSubdir)}
}
