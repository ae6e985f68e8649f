package pgwire

import (
	"testing"

	"github.com/phigate/phigate/session/record"
)

func TestObserverClasses(t *testing.T) {
	for reason, want := range map[string]string{
		"terminate":                  EndTerminate,
		"client closed":              EndClientClosed,
		"server closed":              EndError,
		"node shutdown":              EndShutdown,
		errTokenExpired.Error():      EndRevoked,
		"access revoked: identity x": EndRevoked,
		"recording failed":           EndError,
		"protocol error":             EndError,
		"upstream message too large": EndError,
		"catalog unavailable":        EndError,
		"closed":                     EndOther,
	} {
		if got := endClass(reason); got != want {
			t.Errorf("endClass(%q) = %q, want %q", reason, got, want)
		}
	}
	for _, tc := range []struct {
		classes []string
		want    string
	}{
		{nil, ClassNone},
		{[]string{"read"}, "read"},
		{[]string{"read", "read"}, "read"},
		{[]string{"read", "write"}, ClassMixed},
	} {
		if got := commandClass(&record.Command{Classes: tc.classes}); got != tc.want {
			t.Errorf("commandClass(%q) = %q, want %q", tc.classes, got, tc.want)
		}
	}
}

func TestObserverNoAllocation(t *testing.T) {
	c := &conn{srv: &Server{cfg: Config{Observer: nopObserver{}}}}
	rc := &record.Command{Classes: []string{"read"}, Decision: "allow", Postgres: &record.PostgresCommand{Step: record.StepExecute}}
	if n := testing.AllocsPerRun(100, func() { c.observeCommand(rc) }); n != 0 {
		t.Fatalf("observeCommand allocates %v times", n)
	}
}

type nopObserver struct{}

func (nopObserver) SessionStarted()      {}
func (nopObserver) SessionEnded(string)  {}
func (nopObserver) SessionRefused()      {}
func (nopObserver) Command(string, bool) {}
func (nopObserver) Masked(int64)         {}
