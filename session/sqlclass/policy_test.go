package sqlclass_test

import (
	"testing"

	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/session/sqlclass"
)

// TestReadGrantDecidesStatements: statements classified here and judged by
// policy under a read grant.
func TestReadGrantDecidesStatements(t *testing.T) {
	g := &policy.Grant{Name: "ro", Allow: []policy.Class{policy.Read}}
	for _, tt := range []struct {
		sql     string
		allowed bool
	}{
		{"SELECT * FROM patients", true},
		{"BEGIN; SELECT 1; COMMIT", true},
		{"SET search_path = clinic", true},
		{"DELETE FROM patients", false},
		{"SELECT 1; DROP TABLE patients", false},
		{"COPY patients TO STDOUT", false},
		{"SET ROLE postgres", false},
		{"SELECT nextval('s')", false},
	} {
		stmts, err := sqlclass.Classify(tt.sql)
		if err != nil {
			t.Fatal(err)
		}
		d := policy.Command(g, sqlclass.Actions(nil, stmts))
		if d.Allowed != tt.allowed {
			t.Errorf("Command(%q) = %+v, want allowed=%v", tt.sql, d, tt.allowed)
		}
	}
}
