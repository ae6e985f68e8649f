package synth

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// DefaultSeed is the seed Load uses.
const DefaultSeed int64 = 1

// Patient is one row of public.patients. Every field but ID, Sex and DOB's
// type is PHI in the HIPAA Safe Harbor sense.
type Patient struct {
	ID                int64
	MRN               string // 8 digits
	FirstName         string
	LastName          string
	Sex               string // "F" or "M"
	DOB               time.Time
	SSN               string // 123-45-6789
	Phone             string // 617-555-0142
	Email             string
	Street            string
	City              string
	State             string
	Zip               string
	InsuranceMemberID string
}

// Encounter is one row of public.encounters: a visit, with free-text notes
// that mention the patient's and other people's identifiers.
type Encounter struct {
	ID         int64
	PatientID  int64
	VisitDate  time.Time
	Department string
	Clinician  string
	Reason     string
	ICD10      string
	Notes      string
}

// Prescription is one row of public.prescriptions.
type Prescription struct {
	ID           int64
	EncounterID  int64
	PatientID    int64
	Drug         string
	Dose         string  // "500 mg"
	StrengthMG   float64 // the dose in mg (mcg doses divided by 1000)
	Route        string
	Frequency    string
	ICD10        string
	NDC          string
	Refills      int32
	PrescribedOn time.Time
}

// Record is a patient with their encounters and prescriptions.
type Record struct {
	Patient       Patient
	Encounters    []Encounter
	Prescriptions []Prescription
}

// String says which patient this is without any of their PHI.
func (r Record) String() string {
	return fmt.Sprintf("synth.Record{patient %d, %d encounters}", r.Patient.ID, len(r.Encounters))
}

// String says which patient this is without any of their PHI.
func (p Patient) String() string { return fmt.Sprintf("synth.Patient{%d}", p.ID) }

// Records yields n patients (IDs 1..n) with their encounters and
// prescriptions. The same n and seed always yield the same records; a
// patient's record does not depend on n, so Records(10, s) is a prefix of
// Records(1000, s).
func Records(n int, seed int64) iter.Seq[Record] {
	return func(yield func(Record) bool) {
		var encID, rxID int64
		for i := range n {
			r := newPatientRand(seed, i)
			rec := r.record(int64(i+1), mrn(seed, i), &encID, &rxID)
			if !yield(rec) {
				return
			}
		}
	}
}

// mrn is a bijection of the patient index onto 8-digit numbers, so MRNs are
// unique without remembering the ones already given.
func mrn(seed int64, i int) string {
	const mod = 100_000_000
	// 7654321 is coprime with 10^8, so i -> i*k+c mod 10^8 is one-to-one.
	v := (uint64(i)*7_654_321 + uint64(seed)*104_729 + 1_000_003) % mod
	return fmt.Sprintf("%08d", v)
}

type patientRand struct{ *rand.Rand }

func newPatientRand(seed int64, i int) patientRand {
	return patientRand{rand.New(rand.NewPCG(uint64(seed), uint64(i)*0x9E3779B97F4A7C15+1))}
}

func (r patientRand) pick(list []string) string { return list[r.IntN(len(list))] }

// between returns a day in [from, to).
func (r patientRand) between(from, to time.Time) time.Time {
	days := int(to.Sub(from).Hours() / 24)
	return from.AddDate(0, 0, r.IntN(days))
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// phone returns a number in the 555-0100..0199 range that NANP keeps for
// fiction, so no real subscriber is ever named.
func (r patientRand) phone(area string) string {
	return fmt.Sprintf("%s-555-01%02d", area, r.IntN(100))
}

// phoneAs writes a 617-555-0142 number the way people type it.
func (r patientRand) phoneAs(p string) string {
	a, x, l := p[0:3], p[4:7], p[8:12]
	switch r.IntN(5) {
	case 0:
		return "(" + a + ") " + x + "-" + l
	case 1:
		return a + "." + x + "." + l
	case 2:
		return "+1 " + a + " " + x + " " + l
	case 3:
		return a + x + l
	}
	return p
}

func (r patientRand) ssn() string {
	area := 1 + r.IntN(899)
	if area == 666 {
		area = 667
	}
	return fmt.Sprintf("%03d-%02d-%04d", area, 1+r.IntN(99), 1+r.IntN(9999))
}

func (r patientRand) person() (first, last, sex string) {
	g := givenNames[r.IntN(len(givenNames))]
	return g.name, r.pick(familyNames), g.sex
}

func (r patientRand) record(id int64, mrn string, encID, rxID *int64) Record {
	first, last, sex := r.person()
	pl := places[r.IntN(len(places))]
	street := fmt.Sprintf("%d %s %s", 1+r.IntN(9899), r.pick(streetNames), r.pick(streetSuffixes))
	if r.IntN(4) == 0 {
		street += fmt.Sprintf(" %s %d", r.pick(unitPrefixes), 1+r.IntN(40))
	}
	letters := func(k int) string {
		b := make([]byte, k)
		for j := range b {
			b[j] = byte('A' + r.IntN(26))
		}
		return string(b)
	}
	emailUser := strings.ToLower(strings.NewReplacer(" ", "", "'", "").Replace(first + "." + last))
	if r.IntN(2) == 0 {
		emailUser += strconv.Itoa(r.IntN(100))
	}
	p := Patient{
		ID:                id,
		MRN:               mrn,
		FirstName:         first,
		LastName:          last,
		Sex:               sex,
		DOB:               r.between(date(1932, 1, 1), date(2016, 1, 1)),
		SSN:               r.ssn(),
		Phone:             r.phone(pl.area),
		Email:             emailUser + "@" + r.pick(emailDomains),
		Street:            street,
		City:              pl.city,
		State:             pl.state,
		Zip:               fmt.Sprintf("%s%02d", pl.zip3, 1+r.IntN(99)),
		InsuranceMemberID: letters(3) + fmt.Sprintf("%09d", r.IntN(1_000_000_000)),
	}
	rec := Record{Patient: p}
	visits := 1 + r.IntN(5)
	day := r.between(date(2019, 1, 1), date(2024, 6, 1))
	var prev *Encounter
	for range visits {
		*encID++
		c := conditions[r.IntN(len(conditions))]
		e := Encounter{
			ID:         *encID,
			PatientID:  id,
			VisitDate:  day,
			Department: r.pick(departments),
			Clinician:  r.pick(clinicians),
			Reason:     c.name,
			ICD10:      c.icd10,
		}
		var rxs []Prescription
		for k, d := range c.drugs {
			if k > 0 && r.IntN(2) == 0 {
				continue
			}
			*rxID++
			mg := d.strength
			if d.unit == "mcg" {
				mg = d.strength / 1000
			}
			rxs = append(rxs, Prescription{
				ID:           *rxID,
				EncounterID:  e.ID,
				PatientID:    id,
				Drug:         d.name,
				Dose:         strconv.FormatFloat(d.strength, 'f', -1, 64) + " " + d.unit,
				StrengthMG:   mg,
				Route:        d.route,
				Frequency:    d.frequency,
				ICD10:        c.icd10,
				NDC:          d.ndc,
				Refills:      int32(r.IntN(6)),
				PrescribedOn: day,
			})
		}
		e.Notes = r.notes(p, e, c, rxs, prev)
		rec.Encounters = append(rec.Encounters, e)
		rec.Prescriptions = append(rec.Prescriptions, rxs...)
		prev = &rec.Encounters[len(rec.Encounters)-1]
		day = day.AddDate(0, 0, 14+r.IntN(200))
	}
	return rec
}

func ageAt(dob, t time.Time) int {
	age := t.Year() - dob.Year()
	if t.YearDay() < dob.YearDay() {
		age--
	}
	return age
}

func mdy(t time.Time) string { return t.Format("01/02/2006") }

// findingValues fills a condition's finding sentence with plausible numbers.
func (r patientRand) findingValues(icd string) []any {
	f := func(lo, hi float64, prec int) string {
		return strconv.FormatFloat(lo+r.Float64()*(hi-lo), 'f', prec, 64)
	}
	i := func(lo, hi int) string { return strconv.Itoa(lo + r.IntN(hi-lo+1)) }
	bp := func() string { return i(104, 168) + "/" + i(62, 98) }
	switch icd {
	case "E11.9":
		return []any{f(6.1, 10.5, 1), i(95, 240)}
	case "I10":
		return []any{bp(), i(56, 96)}
	case "E78.5":
		return []any{i(70, 210), i(150, 290)}
	case "J45.20":
		return []any{i(93, 100), i(250, 520)}
	case "F32.9":
		return []any{i(4, 22), i(2, 18)}
	case "E03.9":
		return []any{f(0.4, 9.5, 2), f(0.7, 1.9, 1)}
	case "K21.9":
		return []any{f(48, 130, 1), f(18.5, 39, 1)}
	case "J01.90", "N39.0":
		return []any{f(98.1, 101.8, 1), i(3, 14)}
	case "M54.50":
		return []any{i(2, 9), i(40, 80)}
	case "I48.91":
		return []any{i(88, 140), i(1, 6)}
	case "N18.31":
		return []any{i(45, 59), f(1.1, 1.6, 2)}
	case "F41.1":
		return []any{i(5, 19), i(4, 8)}
	case "G43.909":
		return []any{i(2, 14), i(1, 20)}
	case "J44.9":
		return []any{i(35, 79), i(88, 96)}
	default:
		return []any{f(48, 130, 1), bp()}
	}
}

// notes writes a visit note the way clinicians do: identifiers of the
// patient and of other people in running prose, next to codes and numbers
// that only look like identifiers.
func (r patientRand) notes(p Patient, e Encounter, c condition, rxs []Prescription, prev *Encounter) string {
	full := p.FirstName + " " + p.LastName
	title := map[string]string{"F": "Ms.", "M": "Mr."}[p.Sex]
	who := map[string]string{"F": "woman", "M": "man"}[p.Sex]
	age := ageAt(p.DOB, e.VisitDate)
	var s []string

	switch r.IntN(4) {
	case 0:
		s = append(s, fmt.Sprintf("%s (MRN %s), DOB %s, seen in %s on %s for %s.",
			full, p.MRN, mdy(p.DOB), e.Department, mdy(e.VisitDate), c.name))
	case 1:
		s = append(s, fmt.Sprintf("Pt is a %d-year-old %s, %s, born %s, MRN#%s, presenting with %s.",
			age, who, full, p.DOB.Format("January 2, 2006"), p.MRN, c.name))
	case 2:
		s = append(s, fmt.Sprintf("%s %s (%s, DOB %s) returns for follow-up of %s (%s).",
			title, p.LastName, p.Sex, p.DOB.Format("2006-01-02"), c.name, c.icd10))
	default:
		s = append(s, fmt.Sprintf("Patient %s, medical record number %s, date of birth %s; chief complaint: %s.",
			full, p.MRN, mdy(p.DOB), c.name))
	}
	s = append(s, fmt.Sprintf(c.finding, r.findingValues(c.icd10)...))

	rel := relations[r.IntN(len(relations))]
	relation := rel.name
	relFirst, relLast, relSex := r.person()
	for rel.sex != "" && relSex != rel.sex {
		relFirst, relLast, relSex = r.person()
	}
	if r.IntN(2) == 0 {
		relLast = p.LastName
	}
	relPhone := r.phone(p.Phone[:3])
	extras := []func() string{
		func() string {
			return fmt.Sprintf("Lives at %s, %s, %s %s with %s %s %s.",
				p.Street, p.City, p.State, p.Zip, relation, relFirst, relLast)
		},
		func() string {
			return fmt.Sprintf("%s%s %s can be reached at %s if the patient is unavailable.",
				strings.ToUpper(relation[:1]), relation[1:], relFirst, r.phoneAs(relPhone))
		},
		func() string { return fmt.Sprintf("Best contact number %s.", r.phoneAs(p.Phone)) },
		func() string { return fmt.Sprintf("Prefers e-mail: %s.", p.Email) },
		func() string {
			return fmt.Sprintf("Insurance member ID %s verified at check-in.", p.InsuranceMemberID)
		},
		func() string {
			if prev == nil {
				return fmt.Sprintf("New patient, transferred from %s clinic, records requested by fax.", p.City)
			}
			return fmt.Sprintf("Last seen %s by %s for %s.", mdy(prev.VisitDate), prev.Clinician, prev.Reason)
		},
	}
	for _, k := range r.Perm(len(extras))[:1+r.IntN(3)] {
		s = append(s, extras[k]())
	}
	if r.IntN(10) == 0 {
		s = append(s, fmt.Sprintf("SSN %s given for the prior authorization.", p.SSN))
	}

	if len(rxs) == 0 {
		s = append(s, fmt.Sprintf("Plan: lifestyle counselling, labs before next visit on %s. Room %d.",
			mdy(e.VisitDate.AddDate(0, 0, 28+r.IntN(150))), 100+r.IntN(400)))
	} else {
		var plan []string
		for _, rx := range rxs {
			refills := fmt.Sprintf("%d refills", rx.Refills)
			if rx.Refills == 1 {
				refills = "1 refill"
			}
			plan = append(plan, fmt.Sprintf("%s %s %s %s (NDC %s), %s",
				rx.Drug, rx.Dose, rx.Route, rx.Frequency, rx.NDC, refills))
		}
		s = append(s, fmt.Sprintf("Plan: %s. Recheck in %d weeks.", strings.Join(plan, "; "), 2+r.IntN(12)))
	}
	if r.IntN(3) == 0 {
		s = append(s, fmt.Sprintf("Discussed with %s's %s, %s %s, at %02d:%02d.",
			p.FirstName, relation, relFirst, relLast, 8+r.IntN(10), r.IntN(60)))
	}
	s = append(s, "-- "+e.Clinician)
	return strings.Join(s, " ")
}
