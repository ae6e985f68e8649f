package record

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// referenceJSON is how Seal encoded events before AppendJSON: encoding/json
// with HTML escaping off, the newline Encode adds trimmed. AppendJSON must
// produce the same bytes and fail where it fails.
func referenceJSON(ev *Event) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(ev); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}

// checkAppendJSON compares AppendJSON with encoding/json for ev, appending
// after a prefix to check that AppendJSON appends and, on failure, leaves
// dst as it was.
func checkAppendJSON(t testing.TB, ev *Event) []byte {
	t.Helper()
	want, wantErr := referenceJSON(ev)
	prefix := []byte("prefix")
	got, err := ev.AppendJSON(prefix)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("AppendJSON error %v, encoding/json error %v", err, wantErr)
	}
	if err != nil {
		if string(got) != "prefix" {
			t.Fatalf("AppendJSON failed but changed dst to %q", got)
		}
		return nil
	}
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("AppendJSON did not append to dst: %q", got)
	}
	if got = got[len(prefix):]; !bytes.Equal(got, want) {
		t.Fatalf("AppendJSON differs from encoding/json:\n got %s\nwant %s", got, want)
	}
	return got
}

// trickyStrings are strings that encoding/json escapes or rewrites.
var trickyStrings = []string{
	"",
	"plain",
	`SELECT "name" FROM t WHERE a < b AND c > d & e`,
	"back\\slash \"quote\"",
	"\b\f\n\r\t\v\x00\x01\x1f\x7f",
	"\u2028 line\u2029paragraph \u2027\u202a",
	"\xff\xfe invalid \xc3 \xc3\xa9 \xe2\x82 \xe2\x82\xac \xf0\x9f\x98 \xf0\x9f\x98\x80",
	"\xed\xa0\x80 surrogate half, \xf4\x90\x80\x80 above U+10FFFF, \xc0\xaf overlong",
	"\ufffd the replacement character itself",
	"Ünïcödé, 日本語, emoji 🩺, combining e\u0301",
	"<script>alert(1)</script>",
	strings.Repeat("a", 300) + "\n",
}

func TestAppendJSONStrings(t *testing.T) {
	for _, s := range trickyStrings {
		for _, ev := range []*Event{
			{Kind: Kind(s), Prev: s, Session: s, Node: s, Identity: s, Resource: s},
			{Kind: KindCommand, Command: &Command{Protocol: s, Postgres: &PostgresCommand{Flow: s, SQL: s, Step: s, Raw: []byte(s), Statement: s, Portal: s, Params: []Param{{Value: s, Format: s, Encoding: s}}}, Classes: []string{s, s}, Decision: s, Rule: s, Reason: s}},
		} {
			checkAppendJSON(t, ev)
		}
	}
}

func TestAppendJSONTimes(t *testing.T) {
	times := []time.Time{
		{},
		t0,
		t0.Add(123456789 * time.Nanosecond),
		t0.Add(120 * time.Millisecond), // trailing zeros of the fraction dropped
		t0.Add(time.Nanosecond),
		time.Now(), // with a monotonic reading, which JSON does not carry
		time.Now().Local(),
		t0.In(time.FixedZone("EST", -5*3600)),
		t0.In(time.FixedZone("", 5*3600+30*60)),
		t0.In(time.FixedZone("", 23*3600+59*60)),
		t0.In(time.FixedZone("", -(23*3600 + 59*60))),
		t0.In(time.FixedZone("", 3600+17)), // seconds of the offset are not written
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, 0),
		time.Unix(-1, 999999999).UTC(),
		// encoding/json refuses these; so must AppendJSON.
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -3600)), // year 10000 in UTC, 9999 locally
		t0.In(time.FixedZone("", 24*3600)),
		t0.In(time.FixedZone("", -24*3600)),
		t0.In(time.FixedZone("", 100*3600)),
		t0.In(time.FixedZone("", -1000*3600)),
		time.Unix(math.MaxInt64, 0),
		time.Unix(math.MinInt64, 0),
	}
	if loc, err := time.LoadLocation("America/New_York"); err == nil {
		times = append(times, t0.In(loc))
	}
	for _, tm := range times {
		checkAppendJSON(t, &Event{Time: tm, Kind: KindSessionEnd, End: &SessionEnd{}})
	}
	_, err := (&Event{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}).AppendJSON(nil)
	if err == nil {
		t.Fatal("a time in year 10000 encoded")
	}
}

// kindEvents has, for every kind, an event with every field set and one
// with only what is not omitempty; plus nil against empty slices.
func kindEvents() map[string]*Event {
	full := func(k Kind) *Event {
		return &Event{Seq: 42, Prev: strings.Repeat("ab", 32), Time: t0.Add(1500 * time.Microsecond), Kind: k,
			Session: testSession, Node: "n1", Identity: "claims-agent", Resource: "patients"}
	}
	with := func(ev *Event, set func(*Event)) *Event { set(ev); return ev }
	return map[string]*Event{
		"zero": {},
		"session.start": with(full(KindSessionStart), func(e *Event) {
			e.Start = &SessionStart{Protocol: "postgres", Client: "10.0.0.1:5000", TLS: true, TLSVersion: "TLS 1.3", IdentityKind: "agent",
				Groups: []string{"billing", "claims"}, User: "agent", Database: "patients", Application: "psql", Grant: "agents-read", Masking: "strict", Upstream: "db:5432", Durability: DurabilityReadAhead}
		}),
		"session.start empty": with(full(KindSessionStart), func(e *Event) { e.Start = &SessionStart{Groups: []string{}} }),
		"auth.failed":         with(full(KindAuthFailed), func(e *Event) { e.Auth = &AuthFailure{User: "mallory", Reason: "bad token"} }),
		"auth.failed empty":   with(full(KindAuthFailed), func(e *Event) { e.Auth = &AuthFailure{} }),
		"access.denied":       with(full(KindAccessDenied), func(e *Event) { e.Denied = &Denial{Rule: "no-ddl", Reason: "ddl not granted"} }),
		"access.denied empty": with(full(KindAccessDenied), func(e *Event) { e.Denied = &Denial{} }),
		"command":             benchEvents()["command"],
		"command empty": with(full(KindCommand), func(e *Event) {
			e.Command = &Command{Postgres: &PostgresCommand{Params: []Param{}, Raw: []byte{}}, Classes: []string{}}
		}),
		"command no body":      with(full(KindCommand), func(e *Event) { e.Command = &Command{ID: 1, Protocol: "ssh", Decision: "allow"} }),
		"result":               benchEvents()["result"],
		"result empty":         with(full(KindResult), func(e *Event) { e.Result = &Result{Masked: []MaskedColumn{}} }),
		"copy.data":            with(full(KindCopyData), func(e *Event) { e.Copy = &CopyData{Command: 3, Offset: 1 << 40, Data: []byte("1\tJane\n\x00\xff")} }),
		"copy.data nil":        with(full(KindCopyData), func(e *Event) { e.Copy = &CopyData{} }),
		"copy.data empty":      with(full(KindCopyData), func(e *Event) { e.Copy = &CopyData{Data: []byte{}} }),
		"protocol.error":       with(full(KindProtocolError), func(e *Event) { e.Error = &ProtocolError{Code: "08P01", Message: "invalid message length"} }),
		"protocol.error empty": with(full(KindProtocolError), func(e *Event) { e.Error = &ProtocolError{} }),
		"mask.key":             with(full(KindMaskKey), func(e *Event) { e.Key = &MaskKey{Auditor: "sha256:abcd", Wrapped: bytes.Repeat([]byte{0xfb}, 77)} }),
		"mask.key nil":         with(full(KindMaskKey), func(e *Event) { e.Key = &MaskKey{} }),
		"mask.proof": with(full(KindMaskProof), func(e *Event) {
			e.Proof = &MaskProof{Command: 9, Statement: 1,
				Rules:   []ProofRule{{Column: 3, Rule: "ssn", Action: "keep-last-4", Type: "SSN", Detector: "ssn"}, {Column: math.MaxInt, Rule: "r"}},
				Spans:   [][4]int64{{2, 0, 4, 15}, {math.MinInt64, 1, math.MaxInt64, -7}},
				RawHMAC: []byte{1, 2, 3}, Sealed: []byte("sealed")}
		}),
		"mask.proof nil values":   with(full(KindMaskProof), func(e *Event) { e.Proof = &MaskProof{} }),
		"mask.proof empty values": with(full(KindMaskProof), func(e *Event) { e.Proof = &MaskProof{Rules: []ProofRule{}, Spans: [][4]int64{}, RawHMAC: []byte{}} }),
		"unseal": with(full(KindUnseal), func(e *Event) {
			e.Unseal = &Unseal{Auditor: "a", Session: "s", Reason: "subpoena", Values: 12, Done: true}
		}),
		"unseal empty": with(full(KindUnseal), func(e *Event) { e.Unseal = &Unseal{} }),
		"policy": with(full(KindPolicy), func(e *Event) {
			e.Policy = &PolicyChange{Revision: math.MaxUint64, Base: 7, SHA256: "ab\u2028cd", AppliedBy: "root \"admin\""}
		}),
		"policy empty": with(full(KindPolicy), func(e *Event) { e.Policy = &PolicyChange{} }),
		"approval": with(full(KindApproval), func(e *Event) {
			e.Approval = &Approval{Request: "01J", Step: ApprovalApproved, Command: math.MaxUint64, Rule: "bulk", Matched: []string{"unbounded-write", "table-write a.b"},
				Approvers: []string{"dba"}, Required: -2, Mode: "hold", By: []string{"ann", "bo\u2028"}, Reason: "ticket <42>", Scope: "window", Until: "2026-11-30T18:00:00Z", At: "x", Node: "n2"}
		}),
		"approval empty": with(full(KindApproval), func(e *Event) { e.Approval = &Approval{Matched: []string{}, By: []string{}} }),
		"cancel":         with(full(KindCancel), func(e *Event) { e.Cancel = &Cancel{Reason: "client cancel request"} }),
		"cancel empty":   with(full(KindCancel), func(e *Event) { e.Cancel = &Cancel{} }),
		"session.end": with(full(KindSessionEnd), func(e *Event) {
			e.End = &SessionEnd{Reason: "terminate", Commands: math.MaxUint64, DurationUS: math.MinInt64}
		}),
		"session.end empty": with(full(KindSessionEnd), func(e *Event) { e.End = &SessionEnd{} }),
		"params": with(full(KindCommand), func(e *Event) {
			e.Command = &Command{ID: 1, Protocol: ProtocolPostgres, Decision: "allow", Postgres: &PostgresCommand{Flow: FlowExtended, SQL: "SELECT $1, $2, $3, $4, $5, $6", Params: []Param{
				{}, {Null: true}, {Format: "binary"}, {Value: "v"}, {Null: true, Value: "v"}, {Null: true, Format: "text", Value: "v"}, {Format: "binary", Value: "AAE="},
			}}}
		}),
		"result error": with(full(KindResult), func(e *Event) {
			e.Result = &Result{Command: 2, Rows: -1, Suspended: true, Error: &SQLError{Code: "42P01", Message: `relation "notes" does not exist`, Source: "upstream"}}
		}),
		"result empty error": with(full(KindResult), func(e *Event) { e.Result = &Result{Error: &SQLError{}} }),
		"change": with(full(KindChange), func(e *Event) {
			v := "Alice \"A\" Moreno\u2028"
			e.Change = &Change{Command: 7, Statement: 2, Phase: ChangeBefore, Op: "update", Table: "public.patients",
				Read: "SELECT patients.* FROM patients WHERE id = $1 LIMIT 101 FOR NO KEY UPDATE OF patients", Columns: []string{"id", "name"},
				Rows: [][]*string{{&v, nil}, nil, {}}, Base64: [][2]int{{0, 1}, {math.MaxInt, -1}}, More: true, Affected: math.MinInt64,
				Error: &SQLError{Code: "23505", Message: "duplicate key", Source: "upstream"}, Masked: []MaskedColumn{{Column: "name", Rule: "r", Action: "redact", Values: 1}},
				Reason: "not analysed: a writable CTE"}
		}),
		"change empty": with(full(KindChange), func(e *Event) {
			e.Change = &Change{Columns: []string{}, Rows: [][]*string{}, Base64: [][2]int{}, Masked: []MaskedColumn{}}
		}),
		"change nil": with(full(KindChange), func(e *Event) { e.Change = &Change{} }),
		"change.outcome": with(full(KindChangeOutcome), func(e *Event) {
			e.Outcome = &ChangeOutcome{Outcome: OutcomeRolledBack, Reason: "ROLLBACK TO SAVEPOINT s", Changes: []ChangeRef{{1, 0}, {math.MaxUint64, math.MinInt}}}
		}),
		"change.outcome nil":   with(full(KindChangeOutcome), func(e *Event) { e.Outcome = &ChangeOutcome{} }),
		"change.outcome empty": with(full(KindChangeOutcome), func(e *Event) { e.Outcome = &ChangeOutcome{Changes: []ChangeRef{}} }),
		"mask.proof phase":     with(full(KindMaskProof), func(e *Event) { e.Proof = &MaskProof{Command: 1, Phase: ChangeAfter, Rules: []ProofRule{}} }),
		"masked column empty":  with(full(KindResult), func(e *Event) { e.Result = &Result{Masked: []MaskedColumn{{}, {Source: "s"}}} }),
	}
}

func TestAppendJSONEveryKind(t *testing.T) {
	for name, ev := range kindEvents() {
		t.Run(name, func(t *testing.T) { checkAppendJSON(t, ev) })
	}
	for _, ev := range sampleEvents(testSession) {
		checkAppendJSON(t, ev)
	}
}

// TestAppendJSONCoversEveryField sets every field of every type reachable
// from Event (found by reflection, so a field added to event.go is
// included) and compares with encoding/json: a field AppendJSON does not
// know about fails here.
func TestAppendJSONCoversEveryField(t *testing.T) {
	for _, fill := range []int{1, 2} {
		ev := new(Event)
		fillValue(reflect.ValueOf(ev).Elem(), fill)
		got := checkAppendJSON(t, ev)
		// Every part is set at once, which no real event does; each one
		// alone must encode the same too.
		var parts []string
		v := reflect.ValueOf(ev).Elem()
		for i := range v.NumField() {
			if v.Field(i).Kind() != reflect.Pointer {
				continue
			}
			parts = append(parts, v.Type().Field(i).Name)
			one := *ev
			w := reflect.ValueOf(&one).Elem()
			for j := range w.NumField() {
				if j != i && w.Field(j).Kind() == reflect.Pointer {
					w.Field(j).SetZero()
				}
			}
			checkAppendJSON(t, &one)
		}
		if len(parts) != 16 || len(got) < 1000 {
			t.Fatalf("filled %d parts (%v) into %d bytes", len(parts), parts, len(got))
		}
	}
}

// fillValue sets every field reachable from v to a value that is not the
// zero value (n selects one of two fillings, slices get n elements).
func fillValue(v reflect.Value, n int) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(strings.Repeat("v<\u2028\xff", n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(-int64(n) * 1234567)
	case reflect.Uint64:
		v.SetUint(uint64(n) * 98765)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillValue(v.Elem(), n)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes(bytes.Repeat([]byte{0xfe, 0, 'x'}, n))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fillValue(v.Index(i), n)
		}
	case reflect.Array:
		for i := range v.Len() {
			fillValue(v.Index(i), n+i)
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(t0.Add(time.Duration(n) * time.Nanosecond)))
			return
		}
		for i := range v.NumField() {
			fillValue(v.Field(i), n)
		}
	default:
		panic("fillValue: field of kind " + v.Kind().String() + " in an event type: teach AppendJSON and this test about it")
	}
}

// TestAppendJSONRoundTrip decodes what AppendJSON wrote with encoding/json:
// well-formed events come back as they were, and any event re-encodes to
// the same bytes (what Verify and replay read is what was hashed).
func TestAppendJSONRoundTrip(t *testing.T) {
	for name, ev := range kindEvents() {
		payload, err := ev.AppendJSON(nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var back Event
		if err := json.Unmarshal(payload, &back); err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !back.Time.Equal(ev.Time) {
			t.Errorf("%s: time %v came back as %v", name, ev.Time, back.Time)
		}
		want := *ev
		want.Time, back.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(normalizeEmpty(&want), normalizeEmpty(&back)) {
			t.Errorf("%s: round trip:\n got %+v\nwant %+v", name, back, want)
		}
	}
	for _, s := range trickyStrings {
		ev := &Event{Kind: KindCommand, Command: &Command{Protocol: ProtocolPostgres, Postgres: &PostgresCommand{SQL: s}}, Time: t0}
		back := checkRoundTrip(t, checkAppendJSON(t, ev))
		if back.Command.Text() != decodedText(s) {
			t.Errorf("%q came back as %q", s, back.Command.Text())
		}
	}
}

// decodedText is what a string reads as after a JSON round trip: every byte
// that is not valid UTF-8 becomes U+FFFD.
func decodedText(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// checkRoundTrip decodes payload with encoding/json and checks that the
// decoded event encodes as encoding/json encodes it, and to a fixed point:
// once decoded, an event encodes to the same bytes every time.
func checkRoundTrip(t testing.TB, payload []byte) *Event {
	t.Helper()
	var back Event
	if err := json.Unmarshal(payload, &back); err != nil {
		t.Fatalf("encoding/json cannot decode %s: %v", payload, err)
	}
	once := checkAppendJSON(t, &back)
	var again Event
	if err := json.Unmarshal(once, &again); err != nil {
		t.Fatalf("encoding/json cannot decode %s: %v", once, err)
	}
	if twice, err := again.AppendJSON(nil); err != nil || !bytes.Equal(twice, once) {
		t.Fatalf("a decoded event encodes differently each time (%v):\n%s\n%s", err, once, twice)
	}
	return &back
}

// normalizeEmpty returns a copy of ev in which empty omitempty slices are
// nil, as they decode.
func normalizeEmpty(ev *Event) *Event {
	c := *ev
	if c.Start != nil && len(c.Start.Groups) == 0 {
		s := *c.Start
		s.Groups = nil
		c.Start = &s
	}
	if c.Command != nil {
		cmd := *c.Command
		if len(cmd.Classes) == 0 {
			cmd.Classes = nil
		}
		if cmd.Postgres != nil {
			pg := *cmd.Postgres
			if len(pg.Params) == 0 {
				pg.Params = nil
			}
			if len(pg.Raw) == 0 {
				pg.Raw = nil
			}
			cmd.Postgres = &pg
		}
		c.Command = &cmd
	}
	if c.Approval != nil {
		a := *c.Approval
		if len(a.Matched) == 0 {
			a.Matched = nil
		}
		if len(a.By) == 0 {
			a.By = nil
		}
		c.Approval = &a
	}
	if c.Result != nil && len(c.Result.Masked) == 0 {
		r := *c.Result
		r.Masked = nil
		c.Result = &r
	}
	if ch := c.Change; ch != nil {
		cp := *ch
		if len(cp.Columns) == 0 {
			cp.Columns = nil
		}
		if len(cp.Rows) == 0 {
			cp.Rows = nil
		}
		if len(cp.Base64) == 0 {
			cp.Base64 = nil
		}
		if len(cp.Masked) == 0 {
			cp.Masked = nil
		}
		c.Change = &cp
	}
	return &c
}

func TestAppendJSONDoesNotAllocate(t *testing.T) {
	for name, ev := range benchEvents() {
		buf := make([]byte, 0, 4096)
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := ev.AppendJSON(buf[:0]); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: AppendJSON into a buffer with room allocated %v times", name, allocs)
		}
	}
}

func TestSealDoesNotAllocate(t *testing.T) {
	for name, ev := range benchEvents() {
		c := NewChain(testSession)
		buf, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		// One allocation per event is allowed: the hex string of the chain
		// head that the next event carries as Prev.
		allocs := testing.AllocsPerRun(256, func() {
			buf, err = c.Seal(buf[:0], ev)
			if err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("%s: Seal allocated %v times per event", name, allocs)
		}
	}
}

// eventSource turns fuzz input into events: shape drives every choice (which
// parts are present, which string, slice or number goes where), so the
// fuzzer can steer it; strs, blob and nums carry the content.
type eventSource struct {
	shape []byte
	strs  [3]string
	blob  []byte
	nums  [2]int64
}

func (s *eventSource) next() byte {
	if len(s.shape) == 0 {
		return 0
	}
	b := s.shape[0]
	s.shape = s.shape[1:]
	return b
}

func (s *eventSource) str() string {
	c := s.next()
	switch c % 8 {
	case 0:
		return ""
	case 1, 2, 3:
		return s.strs[c%8-1]
	case 4:
		return s.strs[0] + s.strs[1] + s.strs[2]
	default: // a piece, often cut in the middle of a UTF-8 sequence
		str := s.strs[c%3]
		if str == "" {
			return ""
		}
		i := int(s.next()) % len(str)
		j := i + int(s.next())%(len(str)-i+1)
		return str[i:j]
	}
}

func (s *eventSource) bytes() []byte {
	c := s.next()
	switch c % 4 {
	case 0:
		return nil
	case 1:
		return []byte{}
	case 2:
		return s.blob
	default:
		if len(s.blob) == 0 {
			return s.blob
		}
		return s.blob[int(s.next())%len(s.blob):]
	}
}

func (s *eventSource) i64() int64 {
	c := s.next()
	switch c % 7 {
	case 0:
		return 0
	case 1:
		return s.nums[0]
	case 2:
		return s.nums[1]
	case 3:
		return -s.nums[0]
	case 4:
		return math.MinInt64
	case 5:
		return math.MaxInt64
	default:
		return int64(c) - 128
	}
}

func (s *eventSource) u64() uint64 { return uint64(s.i64()) }
func (s *eventSource) int() int    { return int(s.i64()) }
func (s *eventSource) bool() bool  { return s.next()&1 == 1 }

// length picks a slice length, -1 meaning a nil slice.
func (s *eventSource) length() int { return int(s.next()%5) - 1 }

func (s *eventSource) strings() []string {
	n := s.length()
	if n < 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = s.str()
	}
	return out
}

func (s *eventSource) time(sec, nsec int64, zone int) time.Time {
	switch s.next() % 6 {
	case 0:
		return time.Time{}
	case 1:
		return time.Unix(sec, nsec).UTC()
	case 2:
		return time.Unix(sec, nsec) // Local
	case 3: // offsets around the ±24h limit of RFC 3339
		return time.Unix(sec, nsec).In(time.FixedZone("Z", zone%(30*3600)))
	case 4:
		return time.Unix(sec, nsec).In(time.FixedZone("", zone))
	default: // years around the [0,9999] limit of RFC 3339
		return time.Date(int(sec%20000)-5000, time.Month(nsec%14), zone%40, 23, 59, 59, int(nsec), time.UTC)
	}
}

func (s *eventSource) event(sec, nsec int64, zone int) *Event {
	ev := &Event{Seq: s.u64(), Prev: s.str(), Time: s.time(sec, nsec, zone), Kind: Kind(s.str()),
		Session: s.str(), Node: s.str(), Identity: s.str(), Resource: s.str()}
	parts := uint16(s.next()) | uint16(s.next())<<8
	has := func(bit int) bool { return parts&(1<<bit) != 0 }
	if has(0) {
		ev.Start = &SessionStart{Protocol: s.str(), Client: s.str(), TLS: s.bool(), TLSVersion: s.str(), IdentityKind: s.str(),
			Groups: s.strings(), User: s.str(), Database: s.str(), Application: s.str(), Grant: s.str(), Masking: s.str(), Upstream: s.str(), Durability: s.str()}
	}
	if has(1) {
		ev.Auth = &AuthFailure{User: s.str(), Reason: s.str()}
	}
	if has(2) {
		ev.Denied = &Denial{Rule: s.str(), Reason: s.str()}
	}
	if has(3) {
		c := &Command{ID: s.u64(), Protocol: s.str()}
		if s.bool() {
			pg := &PostgresCommand{Flow: s.str(), Step: s.str(), SQL: s.str(), Statement: s.str(), Portal: s.str(), Raw: s.bytes()}
			if n := s.length(); n >= 0 {
				pg.Params = make([]Param, n)
				for i := range pg.Params {
					pg.Params[i] = Param{Null: s.bool(), Format: s.str(), Value: s.str(), Encoding: s.str()}
				}
			}
			c.Postgres = pg
		}
		c.Classes, c.Decision, c.Rule, c.Reason = s.strings(), s.str(), s.str(), s.str()
		ev.Command = c
	}
	if has(4) {
		r := &Result{Command: s.u64(), Tag: s.str(), Rows: s.i64(), Bytes: s.i64(), DurationUS: s.i64()}
		if s.bool() {
			r.Error = &SQLError{Code: s.str(), Message: s.str(), Source: s.str()}
		}
		r.Suspended = s.bool()
		if n := s.length(); n >= 0 {
			r.Masked = make([]MaskedColumn, n)
			for i := range r.Masked {
				r.Masked[i] = MaskedColumn{Column: s.str(), Source: s.str(), Rule: s.str(), Action: s.str(), Values: s.i64()}
			}
		}
		ev.Result = r
	}
	if has(5) {
		ev.Copy = &CopyData{Command: s.u64(), Offset: s.i64(), Data: s.bytes()}
	}
	if has(6) {
		ev.Error = &ProtocolError{Code: s.str(), Message: s.str()}
	}
	if has(7) {
		ev.Cancel = &Cancel{Reason: s.str()}
	}
	if has(8) {
		ev.Key = &MaskKey{Auditor: s.str(), Wrapped: s.bytes()}
	}
	if has(9) {
		p := &MaskProof{Command: s.u64(), Statement: s.int(), Phase: s.str()}
		if n := s.length(); n >= 0 {
			p.Rules = make([]ProofRule, n)
			for i := range p.Rules {
				p.Rules[i] = ProofRule{Column: s.int(), Rule: s.str(), Action: s.str(), Type: s.str(), Detector: s.str()}
			}
		}
		if n := s.length(); n >= 0 {
			p.Spans = make([][4]int64, n)
			for i := range p.Spans {
				p.Spans[i] = [4]int64{s.i64(), s.i64(), s.i64(), s.i64()}
			}
		}
		p.RawHMAC, p.Sealed = s.bytes(), s.bytes()
		ev.Proof = p
	}
	if has(10) {
		ev.Unseal = &Unseal{Auditor: s.str(), Session: s.str(), Reason: s.str(), Values: s.int(), Done: s.bool()}
	}
	if has(13) {
		ch := &Change{Command: s.u64(), Statement: s.int(), Phase: s.str(), Op: s.str(), Table: s.str(), Read: s.str(), Columns: s.strings()}
		if n := s.length(); n >= 0 {
			ch.Rows = make([][]*string, n)
			for i := range ch.Rows {
				if m := s.length(); m >= 0 {
					ch.Rows[i] = make([]*string, m)
					for j := range ch.Rows[i] {
						if s.bool() {
							v := s.str()
							ch.Rows[i][j] = &v
						}
					}
				}
			}
		}
		if n := s.length(); n >= 0 {
			ch.Base64 = make([][2]int, n)
			for i := range ch.Base64 {
				ch.Base64[i] = [2]int{s.int(), s.int()}
			}
		}
		ch.More, ch.Affected, ch.Reason = s.bool(), s.i64(), s.str()
		if s.bool() {
			ch.Error = &SQLError{Code: s.str(), Message: s.str(), Source: s.str()}
		}
		if n := s.length(); n >= 0 {
			ch.Masked = make([]MaskedColumn, n)
			for i := range ch.Masked {
				ch.Masked[i] = MaskedColumn{Column: s.str(), Rule: s.str(), Action: s.str(), Values: s.i64()}
			}
		}
		ev.Change = ch
	}
	if has(14) {
		o := &ChangeOutcome{Outcome: s.str(), Reason: s.str()}
		if n := s.length(); n >= 0 {
			o.Changes = make([]ChangeRef, n)
			for i := range o.Changes {
				o.Changes[i] = ChangeRef{Command: s.u64(), Statement: s.int()}
			}
		}
		ev.Outcome = o
	}
	if has(12) {
		ev.Policy = &PolicyChange{Revision: s.u64(), Base: s.u64(), SHA256: s.str(), AppliedBy: s.str()}
	}
	if has(11) {
		ev.End = &SessionEnd{Reason: s.str(), Commands: s.u64(), DurationUS: s.i64()}
	}
	return ev
}

// FuzzAppendJSONMatchesEncodingJSON builds events from fuzz input (strings
// with any bytes, numbers at their limits, nil, empty and full slices,
// times in and out of RFC 3339's range, any mix of parts) and requires
// AppendJSON to write exactly what encoding/json writes, or to fail where
// it fails; what it writes decodes and re-encodes to the same bytes.
func FuzzAppendJSONMatchesEncodingJSON(f *testing.F) {
	all := bytes.Repeat([]byte{0xff, 0x0b, 0x1c, 0x2d, 0x3e, 0x4f, 0x5a, 0x63, 0x77}, 40)
	f.Add(all, "SELECT name FROM patients WHERE a < b", "\u2028\xff\x00\"\\", "日本語🩺", []byte{0, 1, 2, 0xff}, int64(-7), int64(1<<40), int64(1795550400), int64(123456789), 3600)
	f.Add([]byte{}, "", "", "", []byte(nil), int64(0), int64(0), int64(0), int64(0), 0)
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 3, 0xff, 0x0f}, "a", "b", "c", []byte("d"), int64(1), int64(2), int64(253402300800), int64(0), 86400)
	f.Add(bytes.Repeat([]byte{0x15, 0xae}, 100), "\xe2\x80\xa8\xe2\x80", "\xc3\xa9\xc3", "<&>", []byte{}, int64(math.MaxInt64), int64(math.MinInt64), int64(-62135596801), int64(-1), -86399)
	f.Fuzz(func(t *testing.T, shape []byte, s1, s2, s3 string, blob []byte, n1, n2, sec, nsec int64, zone int) {
		src := &eventSource{shape: shape, strs: [3]string{s1, s2, s3}, blob: blob, nums: [2]int64{n1, n2}}
		ev := src.event(sec, nsec, zone)
		payload := checkAppendJSON(t, ev)
		if payload == nil {
			return
		}
		back := checkRoundTrip(t, payload)
		for _, f := range [][2]string{{back.Prev, ev.Prev}, {string(back.Kind), string(ev.Kind)}, {back.Session, ev.Session},
			{back.Node, ev.Node}, {back.Identity, ev.Identity}, {back.Resource, ev.Resource}} {
			if f[0] != decodedText(f[1]) {
				t.Fatalf("%q came back as %q", f[1], f[0])
			}
		}
		if ev.Copy != nil && !bytes.Equal(back.Copy.Data, ev.Copy.Data) {
			t.Fatalf("COPY data %x came back as %x", ev.Copy.Data, back.Copy.Data)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	for _, name := range []string{"command", "result"} {
		ev := benchEvents()[name]
		b.Run(name+"/AppendJSON", func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = ev.AppendJSON(buf[:0])
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run(name+"/encoding-json", func(b *testing.B) {
			// As Seal used it: one Encoder and buffer for the whole chain.
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := enc.Encode(ev); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len() - 1))
		})
	}
}
