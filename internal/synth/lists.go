package synth

// The embedded lists every synthetic person is drawn from.

type givenName struct {
	name string
	sex  string // "F" or "M"
}

var givenNames = []givenName{
	{"Maria", "F"}, {"Ana", "F"}, {"Emily", "F"}, {"Olivia", "F"}, {"Aisha", "F"},
	{"Mei", "F"}, {"Priya", "F"}, {"Fatima", "F"}, {"Grace", "F"}, {"Sofia", "F"},
	{"Hannah", "F"}, {"Keisha", "F"}, {"Yuki", "F"}, {"Lucia", "F"}, {"Chloe", "F"},
	{"Ngozi", "F"}, {"Ingrid", "F"}, {"Rosa", "F"}, {"Leah", "F"}, {"Mary Ann", "F"},
	{"Dorothy", "F"}, {"Thi Lan", "F"}, {"Siobhan", "F"}, {"Zoe", "F"}, {"Amara", "F"},
	{"James", "M"}, {"Jose", "M"}, {"Wei", "M"}, {"Mohammed", "M"}, {"David", "M"},
	{"Michael", "M"}, {"Rahul", "M"}, {"Daniel", "M"}, {"Kwame", "M"}, {"Luis", "M"},
	{"Hiroshi", "M"}, {"Robert", "M"}, {"Tyrone", "M"}, {"Ethan", "M"}, {"Omar", "M"},
	{"Patrick", "M"}, {"Juan Carlos", "M"}, {"Dmitri", "M"}, {"Samuel", "M"}, {"Minh", "M"},
	{"William", "M"}, {"Elijah", "M"}, {"Arjun", "M"}, {"Sean", "M"}, {"Mateo", "M"},
}

var familyNames = []string{
	"Gonzalez", "Smith", "Nguyen", "Johnson", "Chen", "Patel", "Williams", "Garcia",
	"Okafor", "Kim", "Brown", "Rodriguez", "Hernandez", "Jones", "Khan", "Lee",
	"Martinez", "Davis", "Wang", "Singh", "O'Brien", "Tanaka", "Lopez", "Wilson",
	"Anderson", "Thomas", "Mensah", "Ivanova", "Murphy", "Cohen", "Rossi", "Schmidt",
	"Haddad", "Moore", "Jackson", "Taylor", "White", "Harris", "Clark", "Lewis",
	"Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres",
	"Van der Berg", "Ramirez", "Flores", "Rivera", "Campbell", "Mitchell", "Carter",
	"Roberts", "Diaz", "Reyes", "Morales", "Nakamura",
}

// clinicians staff the clinic; notes mention them by name too.
var clinicians = []string{
	"Dr. Helen Park", "Dr. Samuel Osei", "Dr. Rebecca Lindqvist", "Dr. Arun Mehta",
	"Dr. Claire Dubois", "Dr. Marcus Bell", "Dr. Nadia Rahman", "Dr. Thomas Whitfield",
	"Dr. Elena Petrova", "Dr. Jorge Castillo", "Dr. Linda Cho", "Dr. Kofi Boateng",
	"Nurse Practitioner Amy Sullivan", "PA-C Brian Kowalski", "Dr. Fiona MacLeod",
	"Dr. Rafael Ortega",
}

var departments = []string{
	"Internal Medicine", "Family Medicine", "Cardiology", "Endocrinology",
	"Pulmonology", "Behavioral Health", "Urgent Care", "Nephrology",
}

type place struct {
	city, state, zip3, area string // zip3: first three zip digits; area: phone area code
}

var places = []place{
	{"Boston", "MA", "021", "617"}, {"Springfield", "MA", "011", "413"},
	{"Worcester", "MA", "016", "508"}, {"Providence", "RI", "029", "401"},
	{"Hartford", "CT", "061", "860"}, {"Albany", "NY", "122", "518"},
	{"Brooklyn", "NY", "112", "718"}, {"Newark", "NJ", "071", "973"},
	{"Philadelphia", "PA", "191", "215"}, {"Baltimore", "MD", "212", "410"},
	{"Richmond", "VA", "232", "804"}, {"Atlanta", "GA", "303", "404"},
	{"Chicago", "IL", "606", "312"}, {"Columbus", "OH", "432", "614"},
	{"Detroit", "MI", "482", "313"}, {"Minneapolis", "MN", "554", "612"},
	{"Houston", "TX", "770", "713"}, {"San Antonio", "TX", "782", "210"},
	{"Denver", "CO", "802", "303"}, {"Phoenix", "AZ", "850", "602"},
	{"Portland", "OR", "972", "503"}, {"Seattle", "WA", "981", "206"},
	{"Oakland", "CA", "946", "510"}, {"Fresno", "CA", "937", "559"},
}

var streetNames = []string{
	"Elm", "Maple", "Oak", "Washington", "Lincoln", "Park", "Cedar", "Pine", "Lake",
	"Hill", "Main", "Church", "Highland", "Prospect", "Franklin", "Jefferson", "Walnut",
	"Chestnut", "Spring", "Mill", "Union", "Martin Luther King Jr", "Cesar Chavez",
	"Riverside", "Sunset", "Center", "Forest", "Madison",
}

var streetSuffixes = []string{"St", "Street", "Ave", "Avenue", "Rd", "Road", "Blvd", "Ln", "Dr", "Ct", "Way", "Pl"}

var unitPrefixes = []string{"Apt", "Unit", "#", "Apt."}

var emailDomains = []string{"example.com", "example.org", "example.net", "mail.example.com"}

// relations name who else a note mentions, with the sex their given name
// must have ("" for either).
var relations = []struct{ name, sex string }{
	{"daughter", "F"}, {"son", "M"}, {"wife", "F"}, {"husband", "M"}, {"sister", "F"},
	{"brother", "M"}, {"mother", "F"}, {"father", "M"}, {"partner", ""}, {"niece", "F"},
	{"nephew", "M"}, {"neighbor", ""}, {"caregiver", ""},
}

// conditions pair a reason for a visit with its ICD-10-CM code and what is
// usually prescribed for it. The codes, doses and product codes are the
// look-alikes a masker must leave alone.
type condition struct {
	name  string
	icd10 string
	drugs []drug
	// finding is a sentence of clinical findings; %s are filled with lab
	// values generated for the visit.
	finding string
}

type drug struct {
	name      string
	strength  float64 // in mg, or mcg when unit says so
	unit      string
	route     string
	frequency string
	ndc       string // 5-4-2 digit product code (synthetic)
}

var conditions = []condition{
	{"type 2 diabetes mellitus without complications", "E11.9", []drug{
		{"metformin", 500, "mg", "PO", "BID", "00093-1048-01"},
		{"empagliflozin", 10, "mg", "PO", "daily", "00597-0152-30"},
	}, "HbA1c %s%%, fasting glucose %s mg/dL."},
	{"essential (primary) hypertension", "I10", []drug{
		{"lisinopril", 10, "mg", "PO", "daily", "68180-0513-01"},
		{"amlodipine", 5, "mg", "PO", "daily", "59762-1520-01"},
	}, "BP %s mmHg, HR %s bpm."},
	{"hyperlipidemia, unspecified", "E78.5", []drug{
		{"atorvastatin", 20, "mg", "PO", "nightly", "00071-0156-23"},
	}, "LDL %s mg/dL, total cholesterol %s mg/dL."},
	{"mild intermittent asthma, uncomplicated", "J45.20", []drug{
		{"albuterol HFA", 90, "mcg", "inhaled", "2 puffs q4-6h PRN", "00173-0682-20"},
	}, "SpO2 %s%% on room air, peak flow %s L/min."},
	{"major depressive disorder, single episode, unspecified", "F32.9", []drug{
		{"sertraline", 50, "mg", "PO", "daily", "00049-4960-30"},
	}, "PHQ-9 score %s, GAD-7 %s."},
	{"hypothyroidism, unspecified", "E03.9", []drug{
		{"levothyroxine", 75, "mcg", "PO", "daily before breakfast", "00074-4341-90"},
	}, "TSH %s mIU/L, free T4 %s ng/dL."},
	{"gastro-esophageal reflux disease without esophagitis", "K21.9", []drug{
		{"omeprazole", 20, "mg", "PO", "daily", "62175-0136-37"},
	}, "Weight %s kg, BMI %s."},
	{"acute sinusitis, unspecified", "J01.90", []drug{
		{"amoxicillin", 500, "mg", "PO", "TID x 10 days", "65862-0015-01"},
	}, "Temp %s F, symptoms for %s days."},
	{"low back pain, unspecified", "M54.50", []drug{
		{"ibuprofen", 600, "mg", "PO", "q6h PRN", "55111-0683-05"},
		{"cyclobenzaprine", 5, "mg", "PO", "qHS PRN", "00591-5658-01"},
	}, "Pain %s/10, straight leg raise negative at %s degrees."},
	{"unspecified atrial fibrillation", "I48.91", []drug{
		{"apixaban", 5, "mg", "PO", "BID", "00003-0894-21"},
		{"metoprolol succinate", 25, "mg", "PO", "daily", "00186-1088-05"},
	}, "HR %s bpm irregularly irregular, CHA2DS2-VASc %s."},
	{"chronic kidney disease, stage 3a", "N18.31", []drug{
		{"losartan", 50, "mg", "PO", "daily", "00006-0952-54"},
	}, "eGFR %s mL/min/1.73m2, creatinine %s mg/dL."},
	{"generalized anxiety disorder", "F41.1", []drug{
		{"buspirone", 10, "mg", "PO", "BID", "00378-1140-01"},
	}, "GAD-7 %s, sleeping %s hours a night."},
	{"migraine, unspecified, not intractable", "G43.909", []drug{
		{"sumatriptan", 50, "mg", "PO", "at onset, may repeat x1 in 2h", "00173-0736-01"},
	}, "%s headache days per month, last episode %s days ago."},
	{"urinary tract infection, site not specified", "N39.0", []drug{
		{"nitrofurantoin monohydrate/macrocrystals", 100, "mg", "PO", "BID x 5 days", "47781-0303-01"},
	}, "UA leukocyte esterase positive, temp %s F, WBC %s."},
	{"chronic obstructive pulmonary disease, unspecified", "J44.9", []drug{
		{"tiotropium", 18, "mcg", "inhaled", "daily", "00597-0075-41"},
	}, "FEV1 %s%% predicted, SpO2 %s%%."},
	{"annual wellness visit", "Z00.00", nil, "Weight %s kg, BP %s mmHg."},
}
