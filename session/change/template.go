package change

import (
	"reflect"
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Plans by template. A statement sent in the simple protocol carries its
// values as constants, so each execution is a new text, and planning one
// costs several parses and deparses (milliseconds). Cache.Analyze plans
// such a text through its template instead: the text with each constant
// token (as PostgreSQL's own scanner finds them) replaced by a parameter
// $1..$k. The template's plan holds the parameters where its reads use
// the constants; a text's plan is the template's with each parameter token
// replaced by the constant's token, as the text wrote it. So the reads
// hold the text's own constants, lexed by the server as in the statement.
//
// A template is used only when it was learnt from a text whose own plan
// is the same as the template's with that text's constants put back (the
// reads, byte for byte, and every other field): planning copies the
// statement's nodes into its reads and decides on node kinds and names,
// never on a constant's value, and the check at learning holds that for
// each template. A template that fails it (a typed literal such as
// DATE '...' does not parse with a parameter in its place; the deparser
// writes some constants otherwise than the text did) is remembered as
// such, and its texts are planned from their own text.

// literalTokens are the scanner's constant tokens.
var literalTokens = map[pg_query.Token]bool{
	pg_query.Token_ICONST: true, pg_query.Token_FCONST: true, pg_query.Token_SCONST: true,
	pg_query.Token_USCONST: true, pg_query.Token_BCONST: true, pg_query.Token_XCONST: true,
}

// plainLiteral reports whether the deparser writes constant token lit as
// the text did: numbers, and strings in plain quotes without a backslash.
// Others (E'...', $$...$$, U&'...', bit strings, backslashes the deparser
// rewrites as E'\\') keep their text planned from itself, so that a
// text's reads are the same bytes whichever way it was planned.
func plainLiteral(tok pg_query.Token, lit string) bool {
	switch tok {
	case pg_query.Token_ICONST, pg_query.Token_FCONST:
		return true
	case pg_query.Token_SCONST:
		return len(lit) >= 2 && lit[0] == '\'' && lit[len(lit)-1] == '\'' && !strings.ContainsRune(lit, '\\')
	}
	return false
}

// shape returns sql's template and the text of each constant it replaced,
// in order. ok is false when the text has parameters of its own (it is
// planned as itself: a prepared text repeats anyway), no constant, a
// constant that is not plainLiteral, or does not scan.
func shape(sql string) (template string, literals []string, ok bool) {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return "", nil, false
	}
	var b strings.Builder
	last := 0
	for _, t := range scan.GetTokens() {
		switch {
		case t.Token == pg_query.Token_PARAM:
			return "", nil, false
		case literalTokens[t.Token]:
			start, end := int(t.Start), int(t.End)
			if start < last || end > len(sql) || start >= end {
				return "", nil, false
			}
			if !plainLiteral(t.Token, sql[start:end]) {
				return "", nil, false
			}
			literals = append(literals, sql[start:end])
			b.WriteString(sql[last:start])
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(len(literals)))
			last = end
		}
	}
	if len(literals) == 0 {
		return "", nil, false
	}
	b.WriteString(sql[last:])
	return b.String(), literals, true
}

// segments is a read written from a template, split at its parameter
// tokens: text[i] comes before params[i], and text ends with one more.
type segments struct {
	text   []string
	params []int
}

// split scans sql for its parameter tokens.
func split(sql string) (segments, bool) {
	scan, err := pg_query.Scan(sql)
	if err != nil {
		return segments{}, false
	}
	var s segments
	last := 0
	for _, t := range scan.GetTokens() {
		if t.Token != pg_query.Token_PARAM {
			continue
		}
		start, end := int(t.Start), int(t.End)
		if start < last || end > len(sql) || start >= end || sql[start] != '$' {
			return segments{}, false
		}
		n, err := strconv.Atoi(sql[start+1 : end])
		if err != nil || n < 1 {
			return segments{}, false
		}
		s.text = append(s.text, sql[last:start])
		s.params = append(s.params, n)
		last = end
	}
	s.text = append(s.text, sql[last:])
	return s, true
}

// putBack writes the read with each parameter $n, n <= len(literals),
// replaced by literals[n-1], and the ones after them renumbered ($n
// becomes $(n-len(literals))).
func (s segments) putBack(literals []string) string {
	var b strings.Builder
	n := 0
	for _, t := range s.text {
		n += len(t)
	}
	b.Grow(n + 16*len(s.params))
	for i, p := range s.params {
		b.WriteString(s.text[i])
		if p <= len(literals) {
			b.WriteString(literals[p-1])
		} else {
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p - len(literals)))
		}
	}
	b.WriteString(s.text[len(s.text)-1])
	return b.String()
}

// splits keeps a template plan's reads split (its before read and the
// after reads After wrote), so that a text's reads cost no scan.
type splits struct {
	mu sync.Mutex
	m  map[string]segments
}

// putBack is segments.putBack of read sql, which the template plan p wrote.
func (p *Plan) putBack(sql string, literals []string) (string, bool) {
	if p.splits == nil {
		s, ok := split(sql)
		return s.putBack(literals), ok
	}
	p.splits.mu.Lock()
	s, ok := p.splits.m[sql]
	p.splits.mu.Unlock()
	if !ok {
		if s, ok = split(sql); !ok {
			return "", false
		}
		p.splits.mu.Lock()
		if len(p.splits.m) >= maxAfterReads+1 {
			clear(p.splits.m)
		}
		p.splits.m[sql] = s
		p.splits.mu.Unlock()
	}
	return s.putBack(literals), true
}

// bind is the plan of a text whose template planned as p, its constants
// being literals.
func (p *Plan) bind(literals []string) (*Plan, bool) {
	before, ok := p.putBack(p.Before, literals)
	if !ok {
		return nil, false
	}
	q := &Plan{Op: p.Op, Target: p.Target, Relations: p.Relations, Before: before, Assigns: p.Assigns,
		Params: p.Params - len(literals), NeedsKey: p.NeedsKey, NoAfter: p.NoAfter,
		version: p.version, ref: p.ref, rel: p.rel, bound: p.bound, tmpl: p, literals: literals}
	return q, true
}

// afterBound is After for a plan made by bind: the template's after read,
// its parameters numbered past the constants, with them put back.
func (p *Plan) afterBound(keys []string, rows, first int) (string, error) {
	sql, err := p.tmpl.After(keys, rows, first+len(p.literals))
	if err != nil || sql == "" {
		return sql, err
	}
	out, ok := p.tmpl.putBack(sql, p.literals)
	if !ok {
		return "", notAnalysed(p.Op, "phigate could not write its read of this statement")
	}
	return out, nil
}

// sameResult reports whether a text's own Analyze result (exact, exactErr)
// is what its template's result (tmpl, tmplErr) gives with its constants
// put back: the check a template passes before it is used.
func sameResult(exact *Plan, exactErr error, tmpl *Plan, tmplErr error, literals []string) bool {
	if exactErr != nil || tmplErr != nil {
		return exactErr != nil && tmplErr != nil && reflect.TypeOf(exactErr) == reflect.TypeOf(tmplErr) && exactErr.Error() == tmplErr.Error() &&
			exact == nil && tmpl == nil
	}
	if exact == nil || tmpl == nil {
		return exact == nil && tmpl == nil
	}
	bound, ok := tmpl.bind(literals)
	if !ok || bound.Op != exact.Op || bound.Target != exact.Target || bound.Before != exact.Before ||
		bound.Params != exact.Params || bound.NeedsKey != exact.NeedsKey || bound.NoAfter != exact.NoAfter ||
		!reflect.DeepEqual(bound.Relations, exact.Relations) || !reflect.DeepEqual(bound.Assigns, exact.Assigns) {
		return false
	}
	// The after reads: by a one- and a two-column key, and by condition.
	for _, k := range []struct {
		keys []string
		rows int
	}{{nil, 0}, {[]string{"id"}, 2}, {[]string{"a", "b"}, 1}} {
		a, errA := bound.After(k.keys, k.rows, exact.Params+1)
		b, errB := exact.After(k.keys, k.rows, exact.Params+1)
		if a != b || (errA == nil) != (errB == nil) {
			return false
		}
	}
	return true
}
