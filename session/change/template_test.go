package change

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// templateTexts are statements whose constants vary: each %s is replaced
// by every value of its row in variants.
var templateTexts = []string{
	"UPDATE pgbench_accounts SET abalance = abalance + %[1]s WHERE aid = %[2]s",
	"UPDATE pgbench_tellers SET tbalance = tbalance + %[1]s WHERE tid = %[2]s",
	"UPDATE patients SET name = %[3]s, notes = %[3]s || 'x' WHERE id = %[2]s AND dob < %[4]s",
	"UPDATE patients SET notes = E%[3]s WHERE id IN (SELECT id FROM visits ORDER BY 1 LIMIT %[2]s)",
	"UPDATE t SET v = -%[1]s WHERE id = %[2]s -- trailing 42 comment",
	"UPDATE t /* 7 */ SET v = %[5]s::numeric, w = B'101' WHERE id = %[2]s",
	"UPDATE t SET d = DATE %[4]s WHERE id = %[2]s",
	"UPDATE t SET d = %[4]s::date, i = interval '1 day' WHERE id = %[2]s",
	"UPDATE t SET s = $$dollar %[2]s$$ WHERE id = %[2]s",
	"UPDATE t SET s = U&'\\0041' WHERE id = %[2]s",
	"DELETE FROM patients WHERE dob < %[4]s AND id <> %[2]s",
	"DELETE FROM t WHERE id = ANY('{%[2]s,2}'::int[])",
	"INSERT INTO patients (id, name) VALUES (%[2]s, %[3]s), (%[1]s, DEFAULT) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
	"INSERT INTO t (id, v) VALUES (%[2]s, %[5]s) ON CONFLICT DO NOTHING",
	"INSERT INTO audit_log (id, msg) VALUES (%[2]s, %[3]s)",
	"MERGE INTO accounts a USING (SELECT %[2]s AS id, %[5]s AS amt) s ON a.id = s.id WHEN MATCHED THEN UPDATE SET bal = a.bal + s.amt WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.amt)",
	"SELECT * FROM patients WHERE id = %[2]s",
	"TRUNCATE t",
	"UPDATE t SET v = %[1]s; UPDATE t SET v = %[2]s",
	"WITH d AS (DELETE FROM t WHERE id = %[2]s RETURNING *) SELECT * FROM d",
	"UPDATE t SET v = %[1]s WHERE id = %[2]s RETURNING v * %[5]s",
}

// variants are the constants each text is written with: integer, key,
// string, date string, decimal.
var variants = [][5]string{
	{"1", "7", "'ann'", "'1970-01-01'", "1.5"},
	{"-3", "2147483648", "'o''brien'", "'2001-02-03'", "1e10"},
	{"0", "99999999999999999999", "'\\n $1 -- x'", "'x'", ".5"},
	{"42", "1", "''", "'2020-12-31'", "0.000"},
}

// TestTemplatePlansAsText: for every text and every variant of its
// constants, the plan the cache gives (through the template learnt from
// the first variant) is the plan of the text itself: the same reads, byte
// for byte, the same after reads, the same error.
func TestTemplatePlansAsText(t *testing.T) {
	c := NewCache(100, 0)
	viaTemplate := 0
	for _, text := range templateTexts {
		for i, v := range variants {
			sql := fmt.Sprintf(text, v[0], v[1], v[2], v[3], v[4])
			got, gotErr := c.Analyze(sql)
			want, wantErr := Analyze(sql, 100)
			if msg := samePlan(got, gotErr, want, wantErr); msg != "" {
				t.Errorf("%s: %s", sql, msg)
			}
			if got != nil && got.tmpl != nil {
				viaTemplate++
			} else if i >= 2 && strings.HasPrefix(text, "UPDATE pgbench_") { // variant 1 is negative: another template
				t.Errorf("%s: not planned through its template", sql)
			}
		}
	}
	if viaTemplate < 20 {
		t.Errorf("only %d texts planned through a template", viaTemplate)
	}
	t.Logf("%d texts planned through a template", viaTemplate)
}

// samePlan describes how two Analyze results differ ("" if they do not).
func samePlan(got *Plan, gotErr error, want *Plan, wantErr error) string {
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		return fmt.Sprintf("error %v, want %v", gotErr, wantErr)
	}
	if (got == nil) != (want == nil) {
		return fmt.Sprintf("plan %v, want %v", got != nil, want != nil)
	}
	if got == nil {
		return ""
	}
	if got.Op != want.Op || got.Target != want.Target || got.Before != want.Before || got.Params != want.Params ||
		got.NeedsKey != want.NeedsKey || got.NoAfter != want.NoAfter || !reflect.DeepEqual(got.Relations, want.Relations) ||
		!reflect.DeepEqual(got.Assigns, want.Assigns) {
		return fmt.Sprintf("plan\n%+v\nwant\n%+v", *got, *want)
	}
	for _, k := range []struct {
		keys []string
		rows int
	}{{nil, 0}, {[]string{"id"}, 1}, {[]string{"id"}, 3}, {[]string{"aid", "bid"}, 2}} {
		a, errA := got.After(k.keys, k.rows, want.Params+1)
		b, errB := want.After(k.keys, k.rows, want.Params+1)
		if a != b || (errA == nil) != (errB == nil) {
			return fmt.Sprintf("after read (keys %v, %d rows)\n%s (%v)\nwant\n%s (%v)", k.keys, k.rows, a, errA, b, errB)
		}
	}
	return ""
}

// FuzzTemplate: whatever the text, once its template is learnt, a text of
// the same template with other constants is planned as itself.
func FuzzTemplate(f *testing.F) {
	for _, text := range templateTexts {
		f.Add(fmt.Sprintf(text, "1", "2", "'a'", "'b'", "3.5"), "9", "'zz'")
	}
	f.Fuzz(func(t *testing.T, sql, num, str string) {
		c := NewCache(100, 0)
		first, firstErr := c.Analyze(sql)
		want, wantErr := Analyze(sql, 100)
		if msg := samePlan(first, firstErr, want, wantErr); msg != "" {
			t.Fatalf("%s: %s", sql, msg)
		}
		tmpl, literals, ok := shape(sql)
		if !ok {
			return
		}
		// Another text of the template: each constant replaced by one of
		// the fuzzer's, when it scans as the same kind of token.
		other := tmpl
		for i := len(literals); i >= 1; i-- {
			repl := literals[i-1]
			if k, ok := tokenKind(num); ok && k == pg_query.Token_ICONST && isKind(repl, k) {
				repl = num
			} else if k, ok := tokenKind(str); ok && k == pg_query.Token_SCONST && isKind(repl, k) {
				repl = str
			}
			other = strings.Replace(other, fmt.Sprintf("$%d", i), repl, 1)
		}
		if t2, _, ok := shape(other); !ok || t2 != tmpl {
			return // the replacement made another template
		}
		got, gotErr := c.Analyze(other)
		want, wantErr = Analyze(other, 100)
		if msg := samePlan(got, gotErr, want, wantErr); msg != "" {
			t.Fatalf("learnt from %q, planned %q: %s", sql, other, msg)
		}
	})
}

// tokenKind is the kind of s when s scans as one token.
func tokenKind(s string) (pg_query.Token, bool) {
	scan, err := pg_query.Scan(s)
	if err != nil || len(scan.GetTokens()) != 1 || int(scan.GetTokens()[0].End) != len(s) || scan.GetTokens()[0].Start != 0 {
		return 0, false
	}
	return scan.GetTokens()[0].Token, true
}

func isKind(s string, k pg_query.Token) bool { got, ok := tokenKind(s); return ok && got == k }

// BenchmarkTemplate: planning a pgbench update that differs from the last
// one only in its constants, through its template and from its text.
func BenchmarkTemplate(b *testing.B) {
	text := "UPDATE pgbench_accounts SET abalance = abalance + %d WHERE aid = %d"
	b.Run("template", func(b *testing.B) {
		c := NewCache(100, 0)
		for i := 0; b.Loop(); i++ {
			p, err := c.Analyze(fmt.Sprintf(text, i%5000, i))
			if err != nil || p == nil {
				b.Fatal(err)
			}
			if _, err := p.After([]string{"aid"}, 1, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("text", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			p, err := Analyze(fmt.Sprintf(text, i%5000, i), 100)
			if err != nil || p == nil {
				b.Fatal(err)
			}
			if _, err := p.After([]string{"aid"}, 1, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
