package sqlclass

import "testing"

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"DELETE FROM patients WHERE ssn = '123-45-6789' -- John Smith": "DELETE FROM patients WHERE ssn = $1",
		"/* Jane Doe */ UPDATE notes SET body = $$Jane's chart$$":      "UPDATE notes SET body = $1",
		"SELECT * FROM patients WHERE name = E'O\\'Brien' LIMIT 5":     "SELECT * FROM patients WHERE name = $1 LIMIT $2",
		"DELETE FROM t WHERE": "",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSetting(t *testing.T) {
	for _, c := range []struct {
		in, name, value string
		reset, ok       bool
	}{
		{"SET phigate.reason = 'ticket 42: purge test rows'", "phigate.reason", "ticket 42: purge test rows", false, true},
		{"set PHIGATE.REASON to 'x'", "phigate.reason", "x", false, true},
		{"SET LOCAL phigate.reason = 'y'", "phigate.reason", "y", false, true},
		{"RESET phigate.reason", "phigate.reason", "", true, true},
		{"SET phigate.reason TO DEFAULT", "phigate.reason", "", true, true},
		{"RESET ALL", "all", "", true, true},
		{"SELECT 1", "", "", false, false},
		{"SET a = 1; SET b = 2", "", "", false, false},
	} {
		name, value, reset, ok := Setting(c.in)
		if name != c.name || value != c.value || reset != c.reset || ok != c.ok {
			t.Errorf("Setting(%q) = %q %q %v %v", c.in, name, value, reset, ok)
		}
	}
}
