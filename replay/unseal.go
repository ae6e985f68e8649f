package replay

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"

	"github.com/phigate/phigate/session/proof"
	"github.com/phigate/phigate/session/record"
)

// ErrNoProof is returned by Unseal for a session that masked nothing (or
// recorded no proof).
var ErrNoProof = errors.New("replay: the session recorded no masking proof")

// Unseal verifies the recording of sessionID in store and prints, for
// every masked value, its command, position, rule, type and the raw value,
// opened with the auditor private key. It returns how many raw values it
// printed. The caller records the unsealing before calling it
// (replay/auditlog): Unseal itself only reads.
func Unseal(ctx context.Context, w io.Writer, store Store, sessionID string, auditor *ecdh.PrivateKey) (int, error) {
	rec, err := store.Open(ctx, sessionID)
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	defer rec.Close()
	var (
		opener *proof.Opener
		shown  int
		text   = map[uint64]string{}
	)
	_, err = record.Verify(rec, sessionID, rec.Live, func(ev *record.Event, _ []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case ev.Command != nil:
			text[ev.Command.ID] = ev.Command.Text()
		case ev.Key != nil:
			o, err := proof.NewOpener(auditor, ev.Key, sessionID)
			if err != nil {
				return err
			}
			opener = o
		case ev.Proof != nil:
			if opener == nil {
				return errors.New("replay: mask.proof before its session's mask.key")
			}
			if _, err := fmt.Fprintf(w, "command %d: %s\n", ev.Proof.Command, clean(text[ev.Proof.Command])); err != nil {
				return err
			}
			raws, err := opener.Open(ev.Proof)
			if err != nil {
				return fmt.Errorf("replay: event %d: %w", ev.Seq, err)
			}
			for i, raw := range raws {
				sp := ev.Proof.Spans[i]
				if sp[1] < 0 || sp[1] >= int64(len(ev.Proof.Rules)) {
					return fmt.Errorf("replay: event %d span %d names no rule", ev.Seq, i)
				}
				r := ev.Proof.Rules[sp[1]]
				what := clean(r.Action) + " by " + clean(r.Rule)
				if r.Type != "" {
					what += ", " + clean(r.Type)
				}
				if _, err := fmt.Fprintf(w, "  statement %d row %d column %d [%d:%d] %s: %s\n",
					ev.Proof.Statement, sp[0], r.Column, sp[2], sp[3], what, quoteValue(string(raw))); err != nil {
					return err
				}
				shown++
			}
		}
		return nil
	})
	if err != nil {
		return shown, err
	}
	if opener == nil {
		return 0, ErrNoProof
	}
	return shown, nil
}
