package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/phigate/phigate/session/mask"
)

// maskInput is one line of `phigate mask` input.
type maskInput struct {
	ID   json.RawMessage `json:"id"`
	Text string          `json:"text"`
}

type maskFinding struct {
	Start    int    `json:"start"`
	End      int    `json:"end"`
	Type     string `json:"type"`
	Detector string `json:"detector"`
}

type maskOutput struct {
	ID       json.RawMessage `json:"id"`
	Masked   string          `json:"masked"`
	Findings []maskFinding   `json:"findings"`
	Error    string          `json:"error,omitempty"`
}

// maxMaskLine caps one input line of `phigate mask`.
const maxMaskLine = 64 << 20

func newMaskCommand() *cobra.Command {
	var policy, mode string
	cmd := &cobra.Command{
		Use:   "mask",
		Short: "Find and mask PHI in JSON Lines read from stdin",
		Long: `mask reads JSON Lines on stdin, each {"id": "...", "text": "..."}, and writes one
line per input, in order: {"id": "...", "masked": "...", "findings": [{"start": S,
"end": E, "type": "T", "detector": "D"}]}. S and E are offsets in Unicode code points into text (end
exclusive); T is NAME, ADDRESS, LOCATION, ZIP, DATE, AGE, PHONE, FAX, EMAIL, SSN, MRN,
HEALTH_PLAN_ID, ACCOUNT, CREDIT_CARD, LICENSE, VEHICLE_ID, DEVICE_ID, URL, IP or ID;
D names the rule that found it (as in the masking proof).

With --policy FILE, the detect section of the masking profile in FILE (YAML,
as under masking.profiles.NAME in the node configuration) configures the
detectors; without it the default HIPAA profile is used. --mode recall-first (the
default) or precision sets the detectors' trade-off (see docs/masking.md) and
overrides the profile's detect.mode.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			det, err := loadMaskPolicy(policy, mode)
			if err != nil {
				return err
			}
			return runMask(det, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "", "masking profile (YAML) whose detect section configures the detectors")
	cmd.Flags().StringVar(&mode, "mode", "", "detection mode: recall-first (default) or precision")
	return cmd
}

// loadMaskPolicy compiles the detect section of the profile in path (none:
// the default profile's), with mode, when set, in place of its mode.
func loadMaskPolicy(path, mode string) (*mask.Detector, error) {
	var cfg mask.DetectConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("mask: %w", err)
		}
		var pc mask.ProfileConfig
		if err := yaml.Unmarshal(b, &pc); err != nil {
			return nil, fmt.Errorf("mask: %s: %w", path, err)
		}
		if pc.Detect != nil {
			cfg = *pc.Detect
		}
	}
	if mode != "" {
		cfg.Mode = mode
	}
	return mask.NewDetector(cfg)
}

// runMask masks each line of in to out. A line that is not a JSON object
// with id and text gets an output line with an error (so that outputs still
// pair with inputs by position) and is counted on errOut; it does not fail
// the run, which an evaluation over a large corpus would otherwise lose.
func runMask(det *mask.Detector, in io.Reader, out, errOut io.Writer) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), maxMaskLine)
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	scanner := det.NewScanner()
	var masked []byte
	inputs, bad := 0, 0
	for sc.Scan() {
		raw := sc.Bytes()
		if len(bytes.TrimSpace(raw)) == 0 {
			continue // a blank line is not an input
		}
		inputs++
		var rec maskInput
		if err := json.Unmarshal(raw, &rec); err != nil {
			// Keep one output line per input line, so that outputs still
			// pair with inputs by position.
			bad++
			if err := enc.Encode(maskOutput{ID: json.RawMessage("null"), Findings: []maskFinding{}, Error: "line is not a JSON object with id and text"}); err != nil {
				return fmt.Errorf("mask: write: %w", err)
			}
			continue
		}
		text := []byte(rec.Text)
		found := scanner.Scan(text)
		masked = mask.AppendTagged(masked[:0], text, found)
		o := maskOutput{ID: rec.ID, Masked: string(masked), Findings: make([]maskFinding, 0, len(found))}
		if o.ID == nil {
			o.ID = json.RawMessage("null")
		}
		// Byte offsets to code point offsets, in one pass over text.
		pos, cps := 0, 0
		advance := func(to int) int {
			for pos < to {
				_, n := utf8.DecodeRune(text[pos:])
				pos += n
				cps++
			}
			return cps
		}
		for _, f := range found {
			s := advance(f.Start)
			e := advance(f.End)
			o.Findings = append(o.Findings, maskFinding{Start: s, End: e, Type: f.Type.String(), Detector: f.Detector})
		}
		if err := enc.Encode(o); err != nil {
			return fmt.Errorf("mask: write: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("mask: read: %w", err)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if bad > 0 {
		fmt.Fprintf(errOut, "mask: %d of %d lines were not JSON objects with id and text (their output lines carry an error)\n", bad, inputs)
	}
	return nil
}
