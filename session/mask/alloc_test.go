package mask

import "testing"

func TestHIPAARowDoesNotAllocate(t *testing.T) {
	p := hipaa(t)
	names := []string{"id", "mrn", "first_name", "last_name", "dob", "ssn", "phone", "email", "street", "city", "state", "zip", "member_id", "notes"}
	vals := []string{"12", "00458213", "Maria", "Okafor", "1961-03-14", "078-05-1120", "617-555-0143", "maria.okafor@example.com", "12 Oak St", "Boston", "MA", "02114", "XKH482913377", "Seen by Dr. Hanley on 3/14/2005."}
	cols := make([]Column, len(names))
	for i, n := range names {
		cols[i] = Column{Source: "public.patients." + n, Name: n, TypeOID: 25, TypeMod: -1}
	}
	pl := p.Plan(cols, Params{})
	dst := make([]byte, 0, 1024)
	for i := range cols {
		v := []byte(vals[i])
		n := testing.AllocsPerRun(20, func() { dst, _ = pl.AppendValue(dst[:0], i, v) })
		if n != 0 {
			t.Errorf("%s: %.1f allocs", names[i], n)
		}
	}
}
