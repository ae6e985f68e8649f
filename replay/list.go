package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/session/record"
	"github.com/phigate/phigate/storage"
)

// Status is what verification says about a recording.
type Status string

const (
	// StatusClosed: the chain verifies and ends with session.end.
	StatusClosed Status = "closed"
	// StatusOpen: the chain verifies so far and the session is live (a
	// running node may still append to it).
	StatusOpen Status = "open"
	// StatusBroken: the chain does not verify, or the recording ends
	// without session.end while no node may append to it.
	StatusBroken Status = "broken"
)

// SessionInfo summarizes one recording of a store.
type SessionInfo struct {
	ID       string    `json:"id"`
	Start    time.Time `json:"start"` // time of the first event
	End      time.Time `json:"end"`   // time of the last verified event
	Identity string    `json:"identity,omitempty"`
	Resource string    `json:"resource,omitempty"`
	Events   uint64    `json:"events"` // events that verified
	Bytes    int64     `json:"bytes"`  // size of the recording
	Status   Status    `json:"status"`
	// Reason is the end reason of a closed session, or what is wrong with a
	// broken one.
	Reason string `json:"reason,omitempty"`
	// BrokenAt is the index of the first event that does not verify (broken only).
	BrokenAt *uint64 `json:"broken_at,omitempty"`
}

// List verifies every recording in store and returns them sorted by
// session id (creation order for phigate's ids). It only reads, so it is
// safe while a node writes to the store.
func List(ctx context.Context, store Store) ([]SessionInfo, error) {
	recs, err := store.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	out := make([]SessionInfo, 0, len(recs))
	for _, ri := range recs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		info, err := inspect(ctx, store, ri)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

func inspect(ctx context.Context, store Store, ri storage.RecordingInfo) (SessionInfo, error) {
	info := SessionInfo{ID: ri.ID, Bytes: ri.Size}
	rec, err := store.Open(ctx, ri.ID)
	if errors.Is(err, storage.ErrNotFound) {
		info.Status, info.Reason = StatusBroken, "recording file removed while listing"
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("replay: %w", err)
	}
	defer rec.Close()
	sum, err := record.Verify(rec, ri.ID, rec.Live, func(ev *record.Event, _ []byte) error {
		if info.Identity == "" {
			info.Identity = ev.Identity
		}
		if info.Resource == "" {
			info.Resource = ev.Resource
		}
		return nil
	})
	info.Start, info.End, info.Events = sum.First, sum.Last, sum.Events
	var ce *record.ChainError
	switch {
	case err == nil && sum.Closed:
		info.Status, info.Reason = StatusClosed, sum.EndReason
	case err == nil:
		info.Status = StatusOpen
	case errors.As(err, &ce):
		info.Status, info.Reason = StatusBroken, ce.Reason
		at := ce.Index
		info.BrokenAt = &at
	default:
		return info, fmt.Errorf("replay: read %s: %w", ri.ID, err)
	}
	return info, nil
}

// PrintList writes sessions as a table, or as NDJSON when asJSON is set.
func PrintList(w io.Writer, sessions []SessionInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetEscapeHTML(false)
		for _, s := range sessions {
			if err := enc.Encode(s); err != nil {
				return fmt.Errorf("replay: write: %w", err)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tSTART\tDURATION\tIDENTITY\tRESOURCE\tEVENTS\tSTATUS\tDETAIL")
	for _, s := range sessions {
		start, dur := "-", "-"
		if !s.Start.IsZero() {
			start = s.Start.UTC().Format("2006-01-02 15:04:05Z")
			dur = s.End.Sub(s.Start).Round(time.Millisecond).String()
		}
		detail := clean(s.Reason)
		if s.BrokenAt != nil {
			detail = fmt.Sprintf("at event %d: %s", *s.BrokenAt, detail)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n",
			clean(s.ID), start, dur, orDash(clean(s.Identity)), orDash(clean(s.Resource)), s.Events, s.Status, detail)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("replay: write: %w", err)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
