package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Result is one benchmark's figures, one number per system measured in the
// same run (for example "direct", "pgbouncer", "phigate", and ratios such as
// "phigate/direct").
type Result struct {
	Name           string             `json:"name"`
	Unit           string             `json:"unit"`
	HigherIsBetter bool               `json:"higher_is_better"`
	Values         map[string]float64 `json:"values"`
	// Notes says what was run, so that a figure can be reproduced.
	Notes string    `json:"notes,omitempty"`
	Time  time.Time `json:"time"`
}

// Write stores r as dir/<name>.json, replacing an earlier run's file.
func Write(dir string, r Result) error {
	if r.Name == "" {
		return fmt.Errorf("bench: result without a name")
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode %s: %w", r.Name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, r.Name+".json"), append(b, '\n'), 0o644)
}
