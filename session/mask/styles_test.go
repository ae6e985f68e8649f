package mask

import (
	"strings"
	"testing"
)

// TestClinicalStyles checks the recall-first rules on lines in the styles
// of real ICU notes and on other countries' layouts (styles6.txt, written
// after the rules: a regression set), and that the hard negatives in the
// same styles (negatives3.txt) stay unmasked in both modes. Scoring is type
// blind, as masking is: a labelled span counts as found when any finding
// overlaps it.
// TestHeldout7 scores the seventh hand-written set (many countries'
// layouts), written after the recall-first rules and scored once before the
// changes it prompted (first score P 1.000 R 0.808; docs/masking.md); the
// floor is a little under the score after them (P 1.000 R 0.923).
func TestHeldout7(t *testing.T) {
	set := loadMarked(t, "heldout7.txt", "seventh")
	sc := DefaultDetector().NewScanner()
	var tp, fn, fp int
	var log []string
	for _, ex := range set {
		found := sc.Scan([]byte(ex.text))
		for _, g := range ex.spans {
			hit := false
			for _, f := range found {
				hit = hit || overlaps(f, g)
			}
			if hit {
				tp++
			} else {
				fn++
				log = append(log, "miss "+ex.text[g.Start:g.End]+" in: "+ex.text)
			}
		}
		for _, f := range found {
			ok := false
			for _, g := range ex.spans {
				ok = ok || overlaps(f, g)
			}
			if !ok {
				fp++
				log = append(log, "false "+ex.text[f.Start:f.End]+" ("+f.Detector+") in: "+ex.text)
			}
		}
	}
	p, r := float64(tp)/float64(max(tp+fp, 1)), float64(tp)/float64(max(tp+fn, 1))
	t.Logf("seventh set: precision %.3f recall %.3f (tp %d fp %d fn %d)\n%s", p, r, tp, fp, fn, strings.Join(log, "\n"))
	if p < heldout7Floor[0] || r < heldout7Floor[1] {
		t.Errorf("seventh set: precision %.3f recall %.3f, want >= %.2f and >= %.2f", p, r, heldout7Floor[0], heldout7Floor[1])
	}
}

// heldout7Floor is (precision, recall) a little under the current score.
var heldout7Floor = [2]float64{0.95, 0.88}

func TestClinicalStyles(t *testing.T) {
	set := loadMarked(t, "styles6.txt", "styles")
	negatives := loadMarked(t, "negatives3.txt", "neg3")
	for _, mode := range []string{ModeRecallFirst, ModePrecision} {
		det, err := NewDetector(DetectConfig{Mode: mode})
		if err != nil {
			t.Fatal(err)
		}
		sc := det.NewScanner()
		var tp, fn, fp int
		var log []string
		for _, ex := range set {
			found := sc.Scan([]byte(ex.text))
			for _, g := range ex.spans {
				hit := false
				for _, f := range found {
					hit = hit || overlaps(f, g)
				}
				if hit {
					tp++
				} else {
					fn++
					log = append(log, "miss "+ex.text[g.Start:g.End]+" in: "+ex.text)
				}
			}
			for _, f := range found {
				ok := false
				for _, g := range ex.spans {
					ok = ok || overlaps(f, g)
				}
				if !ok {
					fp++
					log = append(log, "false "+ex.text[f.Start:f.End]+" ("+f.Detector+") in: "+ex.text)
				}
			}
		}
		for _, ex := range negatives {
			for _, f := range sc.Scan([]byte(ex.text)) {
				fp++
				log = append(log, "false "+ex.text[f.Start:f.End]+" ("+f.Detector+") in negative: "+ex.text)
			}
		}
		p, r := float64(tp)/float64(max(tp+fp, 1)), float64(tp)/float64(max(tp+fn, 1))
		t.Logf("%s: precision %.3f recall %.3f (tp %d fp %d fn %d)\n%s", mode, p, r, tp, fp, fn, strings.Join(log, "\n"))
		switch mode {
		case ModeRecallFirst:
			if r < 0.97 || p < 0.95 {
				t.Errorf("recall-first: precision %.3f recall %.3f, want >= 0.95 and >= 0.97", p, r)
			}
		case ModePrecision:
			if p < 0.97 {
				t.Errorf("precision: precision %.3f, want >= 0.97", p)
			}
		}
	}
}
