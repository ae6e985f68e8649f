package sqlclass

import (
	"reflect"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Templates: classifying a statement by its text with the literals as
// parameters.
//
// Agents and ORMs that send their values inline (pgbench in the simple
// protocol, query builders) send a new text for every call, so the exact
// text cache never hits and every command is parsed. PostgreSQL's own
// normaliser (pg_query.Normalize, the one pg_stat_statements uses) maps
// such a text to its template: the same bytes with every constant replaced
// by $n. Two texts with the same template differ only in their constants.
//
// Answering for a text with its template's classification is sound for
// the reason prepared statements are: the template is what an agent would
// send in a Parse, and its classification holds for every value its
// parameters may take (a function named, a relation written, a row bound
// unknown). The template's answer is therefore never more permissive than
// the text's own. It may be stricter (the text's LIMIT 10 is a bound the
// template's LIMIT $1 is not), so:
//
//   - a template is used only when, for the text that taught it, its
//     classification equals the text's own in everything but the text
//     itself. A literal that changes the answer keeps the template out;
//   - only single SELECT, INSERT, UPDATE, DELETE and MERGE statements
//     without a COPY, a PREPARE or an effect on the session's objects are
//     templated: in utility statements, constants are file names, settings
//     and options rather than values;
//   - a caller that would refuse or hold a statement on its template's
//     answer classifies the text itself (the proxy does), so the template
//     never refuses what the text's own answer would allow.
//
// The statement's Text is cut from the text asked about, at the same
// offsets from its start and end as the teaching text's statement (there
// are no constants before or after a statement).

// template is what a template answers.
type template struct {
	stmt Statement // Text empty
	// head and tail are how many bytes of the query string come before
	// and after the statement's text (before trimming).
	head, tail int
}

// templated are the statement kinds whose constants are values.
var templated = map[string]bool{
	"select_stmt": true, "insert_stmt": true, "update_stmt": true, "delete_stmt": true, "merge_stmt": true,
}

// apply answers for sql with its template key's statement; ok is false
// when the template is unknown, cannot stand for its texts, or its offsets
// do not fit sql.
func (c *Cache) applyTemplate(key, sql string) ([]Statement, bool) {
	e, ok := c.tmpl.get(key)
	if !ok || e == nil || e.head+e.tail > len(sql) {
		return nil, false
	}
	st := e.stmt
	st.Text = strings.TrimSpace(sql[e.head : len(sql)-e.tail])
	st.Template = key
	return []Statement{st}, true
}

// learn records what key's template answers, from sql (a text with that
// template) classified as stmts from tree. It remembers a template that
// cannot stand for its texts too, so that it is not parsed again.
func (c *Cache) learnTemplate(key, sql string, stmts []Statement, tree *pg_query.ParseResult) {
	if len(key) > maxCachedSQL {
		return
	}
	if _, known := c.tmpl.get(key); known {
		return
	}
	c.tmpl.put(key, teach(key, sql, stmts, tree))
}

// teach returns the template of sql (classified as stmts from tree), or nil
// when it cannot stand for its texts.
func teach(key, sql string, stmts []Statement, tree *pg_query.ParseResult) *template {
	if len(stmts) != 1 || tree == nil || len(tree.GetStmts()) != 1 || !templatable(&stmts[0]) {
		return nil
	}
	raw := tree.GetStmts()[0]
	head, n := int(raw.GetStmtLocation()), int(raw.GetStmtLen())
	tail := 0
	if n > 0 {
		tail = len(sql) - head - n
	}
	if head < 0 || tail < 0 || head+tail > len(sql) || strings.TrimSpace(sql[head:len(sql)-tail]) != stmts[0].Text {
		return nil
	}
	own, err := Classify(key)
	if err != nil || len(own) != 1 {
		return nil
	}
	lit, tmpl := stmts[0], own[0]
	lit.Text, tmpl.Text = "", ""
	if !reflect.DeepEqual(lit, tmpl) {
		return nil
	}
	return &template{stmt: tmpl, head: head, tail: tail}
}

// templatable reports whether a statement's constants are values only.
func templatable(s *Statement) bool {
	return templated[s.Kind] && s.Copy == nil && s.Inner == nil && s.Prepare == "" && s.Execute == "" &&
		s.Effect == EffectNone && s.Refused == ""
}
