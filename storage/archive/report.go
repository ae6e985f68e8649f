package archive

import (
	"encoding/json"
	"time"

	"github.com/phigate/phigate/storage/chunk"
)

// reportJSON is the report's machine-readable form (phigate audit verify
// --json). Field names are a contract: add, never rename.
type reportJSON struct {
	OK         bool                  `json:"ok"`
	From       time.Time             `json:"from"`
	To         time.Time             `json:"to"`
	Now        time.Time             `json:"now"`
	DigestsDue time.Time             `json:"digests_due"`
	Sessions   int                   `json:"sessions"`
	Open       []string              `json:"open_sessions"`
	Chunks     int                   `json:"chunks"`
	Manifests  int                   `json:"manifests"`
	Bytes      int64                 `json:"bytes"`
	Digests    int                   `json:"digests"`
	Anchors    int                   `json:"anchors"`
	Nodes      []nodeJSON            `json:"nodes"`
	ElapsedMS  int64                 `json:"elapsed_ms"`
	Counts     map[chunk.Problem]int `json:"counts"`
	Findings   []findingJSON         `json:"findings"`
}

type nodeJSON struct {
	Node    string `json:"node"`
	Keys    int    `json:"keys"`
	Hours   int    `json:"hours"`
	Digests int    `json:"digests"`
}

// findingJSON is a chunk.Finding; absent locations are omitted.
type findingJSON struct {
	Problem chunk.Problem `json:"problem"`
	Node    string        `json:"node,omitempty"`
	Hour    *time.Time    `json:"hour,omitempty"`
	Session string        `json:"session,omitempty"`
	Seq     *int64        `json:"seq,omitempty"`
	Event   *int64        `json:"event,omitempty"`
	Object  string        `json:"object,omitempty"`
	Detail  string        `json:"detail"`
}

// MarshalJSON writes the report with snake_case names, its findings with
// their locations, and counts by problem.
func (r *Report) MarshalJSON() ([]byte, error) {
	out := reportJSON{
		OK: r.OK(), From: r.From, To: r.To, Now: r.Now, DigestsDue: r.DigestsDue,
		Sessions: r.Sessions, Open: r.Open, Chunks: r.Chunks, Manifests: r.Manifests, Bytes: r.Bytes,
		Digests: r.Digests, Anchors: r.Anchors, ElapsedMS: r.Elapsed.Milliseconds(), Counts: r.Counts(),
		Nodes: []nodeJSON{}, Findings: []findingJSON{},
	}
	if out.Open == nil {
		out.Open = []string{}
	}
	for _, n := range r.Nodes {
		out.Nodes = append(out.Nodes, nodeJSON(n))
	}
	for _, f := range r.Findings {
		j := findingJSON{Problem: f.Problem, Node: f.Node, Session: f.Session, Object: f.Object, Detail: f.Detail}
		if !f.Hour.IsZero() {
			h := f.Hour
			j.Hour = &h
		}
		if f.Seq >= 0 {
			s := f.Seq
			j.Seq = &s
		}
		if f.Event >= 0 {
			e := f.Event
			j.Event = &e
		}
		out.Findings = append(out.Findings, j)
	}
	return json.Marshal(out)
}
