package lineage_test

import (
	"reflect"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/phigate/phigate/session/lineage"
)

// FuzzAnalyze runs random SQL against the test catalog. Analyze recovers
// panics into an opaque "internal error", so that is what fails here; a
// result that is not opaque must have as many outputs as the statement's
// target list gives (exactly, when it has no * to expand), keep the
// invariants of every result, and be the same when analyzed again.
func FuzzAnalyze(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.sql)
	}
	cat := newTestCatalog()
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 4096 {
			return
		}
		res, err := lineage.Analyze(sql, cat)
		if err != nil {
			return // does not parse, or the statement count is off
		}
		if strings.Contains(res.Opaque, "internal error") {
			t.Fatalf("analysis panicked on %q", sql)
		}
		checkInvariants(t, res)
		again, err := lineage.Analyze(sql, cat)
		if err != nil || !reflect.DeepEqual(res, again) {
			t.Fatalf("a second analysis differs: %+v / %+v, %v", res, again, err)
		}
		if res.Opaque != "" || res.Outputs == nil {
			return
		}
		tree, err := pg_query.Parse(sql)
		if err != nil || len(tree.GetStmts()) != 1 {
			t.Fatalf("Analyze parsed what pg_query does not: %v", err)
		}
		n, exact := expectedOutputs(tree.GetStmts()[0].GetStmt())
		if n < 0 {
			return
		}
		if exact && len(res.Outputs) != n || !exact && len(res.Outputs) < n {
			t.Fatalf("%q: %d outputs, the target list gives %d (exact %v)", sql, len(res.Outputs), n, exact)
		}
	})
}

// expectedOutputs counts a statement's output columns from its parse tree
// alone: exact when no * needs expanding, else a lower bound (the targets
// that are not stars). -1: not counted here.
func expectedOutputs(n *pg_query.Node) (int, bool) {
	switch {
	case n.GetSelectStmt() != nil:
		return selectOutputs(n.GetSelectStmt())
	case n.GetInsertStmt() != nil:
		return targetOutputs(n.GetInsertStmt().GetReturningList())
	case n.GetUpdateStmt() != nil:
		return targetOutputs(n.GetUpdateStmt().GetReturningList())
	case n.GetDeleteStmt() != nil:
		return targetOutputs(n.GetDeleteStmt().GetReturningList())
	case n.GetMergeStmt() != nil:
		return targetOutputs(n.GetMergeStmt().GetReturningList())
	case n.GetDeclareCursorStmt() != nil:
		return expectedOutputs(n.GetDeclareCursorStmt().GetQuery())
	case n.GetPrepareStmt() != nil:
		return expectedOutputs(n.GetPrepareStmt().GetQuery())
	case n.GetExplainStmt() != nil:
		return 1, true
	case n.GetCopyStmt() != nil && n.GetCopyStmt().GetQuery() != nil:
		return expectedOutputs(n.GetCopyStmt().GetQuery())
	case n.GetCopyStmt() != nil && len(n.GetCopyStmt().GetAttlist()) > 0:
		return len(n.GetCopyStmt().GetAttlist()), true
	}
	return -1, false
}

func selectOutputs(s *pg_query.SelectStmt) (int, bool) {
	switch {
	case s.GetOp() > pg_query.SetOperation_SETOP_NONE:
		return selectOutputs(s.GetLarg())
	case len(s.GetValuesLists()) > 0:
		return len(s.GetValuesLists()[0].GetList().GetItems()), true
	}
	return targetOutputs(s.GetTargetList())
}

func targetOutputs(list []*pg_query.Node) (int, bool) {
	n, exact := 0, true
	for _, t := range list {
		v := t.GetResTarget().GetVal()
		if f := v.GetColumnRef().GetFields(); len(f) > 0 && f[len(f)-1].GetAStar() != nil {
			exact = false
			continue
		}
		if ind := v.GetAIndirection().GetIndirection(); len(ind) > 0 && ind[len(ind)-1].GetAStar() != nil {
			exact = false
			continue
		}
		n++
	}
	return n, exact
}

// BenchmarkAnalyze is a typical statement of an agent: three tables joined,
// a few expressions, a window function.
func BenchmarkAnalyze(b *testing.B) {
	const sql = `SELECT p.first_name, p.last_name, lower(d.name) AS doctor, a.at, count(*) OVER (PARTITION BY p.id)
		FROM patients p
		JOIN appointments a ON a.patient_id = p.id
		JOIN doctors d ON d.id = a.doctor_id
		WHERE p.dob > $1 AND d.name LIKE 'A%'
		ORDER BY a.at DESC LIMIT 50`
	cat := newTestCatalog()
	res, err := lineage.Analyze(sql, cat)
	if err != nil || res.Opaque != "" || len(res.Outputs) != 5 {
		b.Fatalf("%+v %v", res, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := lineage.Analyze(sql, cat); err != nil {
			b.Fatal(err)
		}
	}
}
