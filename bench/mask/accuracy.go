package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/phigate/phigate/bench"
	"github.com/phigate/phigate/session/mask"
)

// A labelled corpus in the format of shared/eval/score_mask.py: one JSON
// object per line, {"id", "text", "spans": [{"start", "end", "type"}]},
// offsets in code points. Scoring is the same: token level, type blind,
// DateYear and Other neutral.
type labelledDoc struct {
	ID    string `json:"id"`
	Text  string `json:"text"`
	Spans []struct {
		Start int    `json:"start"`
		End   int    `json:"end"`
		Type  string `json:"type"`
	} `json:"spans"`
}

var neutralTypes = map[string]bool{"DateYear": true, "Other": true}

// wordToken is Python's \w+ as the scorer uses it.
var wordToken = regexp.MustCompile(`[\p{L}\p{N}\p{M}_]+`)

func readCorpus(path string) ([]labelledDoc, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var docs []labelledDoc
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var d labelledDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		docs = append(docs, d)
	}
	return docs, sc.Err()
}

type score struct {
	tp, fp, fn int
	byType     map[string][2]int // type -> found, labelled
}

func (s score) precision() float64 { return ratio(s.tp, s.tp+s.fp) }
func (s score) recall() float64    { return ratio(s.tp, s.tp+s.fn) }
func (s score) f2() float64 {
	p, r := s.precision(), s.recall()
	if p+r == 0 {
		return 0
	}
	return 5 * p * r / (4*p + r)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// scoreCorpus runs det over every document and scores it as the shared
// scorer does.
func scoreCorpus(det *mask.Detector, docs []labelledDoc) score {
	sc := det.NewScanner()
	out := score{byType: map[string][2]int{}}
	type span struct{ start, end int }
	for _, d := range docs {
		text := []byte(d.Text)
		// code point offsets of the labels to byte offsets
		cp := make([]int, 0, len(d.Text)+1)
		for i := range d.Text {
			cp = append(cp, i)
		}
		cp = append(cp, len(d.Text))
		at := func(c int) int { return cp[min(max(c, 0), len(cp)-1)] }
		found := sc.Scan(text)
		for _, m := range wordToken.FindAllIndex(text, -1) {
			label := ""
			for _, g := range d.Spans {
				if at(g.Start) < m[1] && m[0] < at(g.End) {
					label = g.Type
					break
				}
			}
			hit := false
			for _, f := range found {
				if f.Start < m[1] && m[0] < f.End {
					hit = true
					break
				}
			}
			switch {
			case label != "":
				c := out.byType[label]
				c[1]++
				if hit {
					c[0]++
				}
				out.byType[label] = c
				if neutralTypes[label] {
					continue
				}
				if hit {
					out.tp++
				} else {
					out.fn++
				}
			case hit:
				out.fp++
			}
		}
	}
	return out
}

// accuracy scores both detection modes on the corpus at path and writes
// mask_accuracy_<name>.json: precision, recall and F2 per mode, and the
// recall of each labelled type in recall-first mode.
func accuracy(path, out string, minTime time.Duration) error {
	docs, err := readCorpus(path)
	if err != nil {
		return err
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	name = strings.NewReplacer("-", "_", ".", "_").Replace(name)
	values := map[string]float64{}
	var byType map[string][2]int
	for _, mode := range []string{mask.ModeRecallFirst, mask.ModePrecision} {
		det, err := mask.NewDetector(mask.DetectConfig{Mode: mode})
		if err != nil {
			return err
		}
		s := scoreCorpus(det, docs)
		values[mode+"/precision"] = s.precision()
		values[mode+"/recall"] = s.recall()
		values[mode+"/f2"] = s.f2()
		if mode == mask.ModeRecallFirst {
			byType = s.byType
		}
	}
	types := make([]string, 0, len(byType))
	for t := range byType {
		types = append(types, t)
	}
	sort.Strings(types)
	var per []string
	for _, t := range types {
		c := byType[t]
		values["recall-first/recall_"+t] = ratio(c[0], c[1])
		per = append(per, fmt.Sprintf("%s %d/%d", t, c[0], c[1]))
	}
	r := bench.Result{
		Name: "mask_accuracy_" + name, Unit: "ratio", HigherIsBetter: true, Values: values,
		Notes: fmt.Sprintf("%s: %d documents; token level, type blind, DateYear and Other neutral (as shared/eval/score_mask.py); recall-first tokens found per type: %s",
			filepath.Base(path), len(docs), strings.Join(per, ", ")),
	}
	if err := bench.Write(out, r); err != nil {
		return err
	}
	printResult(r)

	// Speed on the same real notes: the recall-first scanner, beside a
	// copy of the bytes.
	texts := make([][]byte, len(docs))
	n := 0
	for i, d := range docs {
		texts[i] = []byte(d.Text)
		n += len(texts[i])
	}
	det := mask.DefaultDetector()
	scanner := det.NewScanner()
	copyPass := measure(minTime, n, func(dst []byte) []byte {
		for _, t := range texts {
			dst = append(dst[:0], t...)
		}
		return dst
	})
	scan := measure(minTime, n, func(dst []byte) []byte {
		for _, t := range texts {
			found := scanner.Scan(t)
			dst = mask.AppendTagged(dst[:0], t, found)
		}
		return dst
	})
	sp := bench.Result{
		Name: "mask_free_text_" + name, Unit: "MB/s", HigherIsBetter: true,
		Notes:  fmt.Sprintf("%s: %d real notes, %.1f MB, scanned and tagged one note at a time (recall-first); GOMAXPROCS=1; MB per CPU-second of the process", filepath.Base(path), len(docs), float64(n)/1e6),
		Values: map[string]float64{"copy": copyPass.mbps, "phigate": scan.mbps, "phigate/copy": scan.mbps / copyPass.mbps},
	}
	if err := bench.Write(out, sp); err != nil {
		return err
	}
	printResult(sp)
	return nil
}
