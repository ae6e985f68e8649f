package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseExpectations(t *testing.T) {
	exps, err := ParseExpectations(strings.NewReader(`
# a comment
pgx  pgconn.TestA        reason one
pq,pq-binary pq.TestB/sub   reason  with   spaces
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Expectation{
		{Suite: "pgx", Test: "pgconn.TestA", Reason: "reason one", Line: 3},
		{Suite: "pq", Test: "pq.TestB/sub", Reason: "reason  with   spaces", Line: 4},
		{Suite: "pq-binary", Test: "pq.TestB/sub", Reason: "reason  with   spaces", Line: 4},
	}
	if !reflect.DeepEqual(exps, want) {
		t.Fatalf("got %+v\nwant %+v", exps, want)
	}
	for _, bad := range []string{
		"pgx pgconn.TestA",                           // no reason
		"pgx TestA some reason",                      // not package.Test
		"pgx pgconn.TestA one\npgx pgconn.TestA two", // listed twice
	} {
		if _, err := ParseExpectations(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestAncestors(t *testing.T) {
	got := Ancestors("pgconn.TestA/b/c")
	want := []string{"pgconn.TestA/b", "pgconn.TestA", "pgconn"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := Ancestors("pgtype/zeronull.TestX"); !slices.Equal(got, []string{"pgtype/zeronull"}) {
		t.Fatalf("got %q", got)
	}
}

const testJSON = `{"Action":"start","Package":"example.com/m"}
{"Action":"run","Package":"example.com/m","Test":"TestPass"}
{"Action":"output","Package":"example.com/m","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"pass","Package":"example.com/m","Test":"TestPass","Elapsed":0.5}
{"Action":"run","Package":"example.com/m","Test":"TestTmp//tmp/TestTmp1234567890/001/x"}
{"Action":"pass","Package":"example.com/m","Test":"TestTmp//tmp/TestTmp1234567890/001/x"}
{"Action":"run","Package":"example.com/m/sub","Test":"TestFail"}
{"Action":"output","Package":"example.com/m/sub","Test":"TestFail","Output":"    x_test.go:12: boom\n"}
{"Action":"fail","Package":"example.com/m/sub","Test":"TestFail"}
{"Action":"run","Package":"example.com/m/sub","Test":"TestHung"}
not json
{"Action":"fail","Package":"example.com/m/sub"}
{"Action":"pass","Package":"example.com/m"}
`

func TestParseTestJSON(t *testing.T) {
	res, err := ParseTestJSON(strings.NewReader(testJSON), "example.com/m", "m")
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]Outcome{
		"m.TestPass":                    Pass,
		"m.TestTmp//tmp/TestTmp*/001/x": Pass,
		"sub.TestFail":                  Fail,
		"sub.TestHung":                  Incomplete,
		"sub":                           Fail,
		"m":                             Pass,
		"m.TestNeverRan":                Missing,
	} {
		if got := res.Get(id).Outcome; got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
	if got := res.Get("sub.TestFail").Output; !slices.Equal(got, []string{"    x_test.go:12: boom"}) {
		t.Errorf("output %q", got)
	}
	if len(res.Get("m.TestPass").Output) != 0 {
		t.Errorf("framing lines kept: %q", res.Get("m.TestPass").Output)
	}
	if n := len(res.Tests()); n != 4 {
		t.Errorf("%d tests, want 4", n)
	}
}

func results(kv ...any) Results {
	rs := Results{}
	for i := 0; i < len(kv); i += 2 {
		rs[kv[i].(string)] = &Result{Outcome: kv[i+1].(Outcome)}
	}
	return rs
}

func TestCompare(t *testing.T) {
	direct := results(
		"p", Pass,
		"p.TestSame", Pass,
		"p.TestListed", Pass,
		"p.TestParent", Pass, "p.TestParent/a", Pass, "p.TestParent/b", Pass,
		"p.TestBug", Pass,
		"p.TestStale", Pass,
		"p.TestFailsDirectly", Fail,
		"p.TestSkipsThrough", Pass,
	)
	phigate := results(
		"p", Fail,
		"p.TestSame", Pass,
		"p.TestListed", Fail,
		"p.TestParent", Fail, "p.TestParent/a", Pass, "p.TestParent/b", Fail,
		"p.TestBug", Fail,
		"p.TestStale", Pass,
		"p.TestFailsDirectly", Fail,
		"p.TestSkipsThrough", Skip,
	)
	exps := []Expectation{
		{Suite: "s", Test: "p.TestListed", Reason: "r"},
		{Suite: "s", Test: "p.TestParent/b", Reason: "r"},
		{Suite: "s", Test: "p.TestStale", Reason: "r"},
		{Suite: "s", Test: "p.TestFailsDirectly", Reason: "r"},
	}
	c := Compare("s", direct, phigate, exps)
	var unexpected []string
	for _, d := range c.Unexpected() {
		unexpected = append(unexpected, d.ID)
	}
	if want := []string{"p.TestBug", "p.TestSkipsThrough"}; !slices.Equal(unexpected, want) {
		t.Errorf("unexpected %q, want %q", unexpected, want)
	}
	if c.ExpectedCount() != 3 { // TestListed, TestParent/b, TestParent by its subtest
		t.Errorf("expected count %d, want 3", c.ExpectedCount())
	}
	if len(c.Stale) != 1 || c.Stale[0].Test != "p.TestStale" {
		t.Errorf("stale %+v", c.Stale)
	}
	if len(c.NotCompared) != 1 || c.NotCompared[0].Test != "p.TestFailsDirectly" {
		t.Errorf("not compared %+v", c.NotCompared)
	}
	if len(c.PackageFailures) != 0 {
		t.Errorf("package failures %q: the package's failing tests explain it", c.PackageFailures)
	}
	if c.OK(false) {
		t.Error("OK with unexpected differences")
	}
	if c.PassedDirect != 8 || c.PassedBoth != 3 {
		t.Errorf("passed directly %d, both %d; want 8, 3", c.PassedDirect, c.PassedBoth)
	}
}

func TestCompareParentWithOwnFailure(t *testing.T) {
	direct := results("p.TestP", Pass, "p.TestP/a", Pass)
	phigate := results("p.TestP", Fail, "p.TestP/a", Fail)
	phigate["p.TestP"].Output = []string{"    p_test.go:10: its own failure"}
	c := Compare("s", direct, phigate, []Expectation{{Suite: "s", Test: "p.TestP/a", Reason: "r"}})
	if u := c.Unexpected(); len(u) != 1 || u[0].ID != "p.TestP" {
		t.Fatalf("unexpected %+v: a parent that failed on its own is not explained by its subtests", u)
	}
}

func TestComparePackageFailure(t *testing.T) {
	direct := results("p", Pass, "p.TestA", Pass)
	phigate := results("p", Fail, "p.TestA", Pass)
	phigate["p"].Output = []string{"connection still active: pid=1"}
	c := Compare("s", direct, phigate, nil)
	if !slices.Equal(c.PackageFailures, []string{"p"}) || c.OK(false) {
		t.Fatalf("package failures %q", c.PackageFailures)
	}
}
