package mask

import "strings"

// columnWords maps words of column names to the PHI they hold.
var columnWords = map[string]EntityType{
	"firstname": TypeName, "lastname": TypeName, "surname": TypeName, "fullname": TypeName,
	"fname": TypeName, "lname": TypeName, "givenname": TypeName, "familyname": TypeName, "middlename": TypeName,
	"maiden": TypeName, "nickname": TypeName, "guarantor": TypeName, "emergencycontact": TypeName,
	"dob": TypeDate, "birthdate": TypeDate, "dateofbirth": TypeDate, "birthday": TypeDate,
	"dod": TypeDate, "deathdate": TypeDate, "admitdate": TypeDate, "admissiondate": TypeDate,
	"dischargedate": TypeDate, "visitdate": TypeDate, "servicedate": TypeDate, "encounterdate": TypeDate,
	"appointmentdate": TypeDate, "proceduredate": TypeDate, "patientname": TypeName, "contactname": TypeName,
	"ssn": TypeSSN, "socialsecurity": TypeSSN, "socialsecuritynumber": TypeSSN, "sin": TypeSSN,
	"phone": TypePhone, "phonenumber": TypePhone, "telephone": TypePhone, "tel": TypePhone, "mobile": TypePhone,
	"cell": TypePhone, "cellphone": TypePhone, "homephone": TypePhone, "workphone": TypePhone,
	"fax": TypeFax, "faxnumber": TypeFax,
	"email": TypeEmail, "emailaddress": TypeEmail,
	"address": TypeAddress, "street": TypeAddress, "streetaddress": TypeAddress, "addr": TypeAddress,
	"address1": TypeAddress, "address2": TypeAddress, "addressline1": TypeAddress, "addressline2": TypeAddress,
	"city": TypeLocation, "town": TypeLocation, "county": TypeLocation,
	"zip": TypeZip, "zipcode": TypeZip, "postal": TypeZip, "postalcode": TypeZip, "postcode": TypeZip,
	"mrn": TypeMRN, "medicalrecord": TypeMRN, "medicalrecordnumber": TypeMRN, "chartnumber": TypeMRN,
	"memberid": TypeHealthPlanID, "policynumber": TypeHealthPlanID, "insuranceid": TypeHealthPlanID,
	"subscriberid": TypeHealthPlanID, "mbi": TypeHealthPlanID, "medicaidid": TypeHealthPlanID, "medicareid": TypeHealthPlanID,
	"insurancememberid": TypeHealthPlanID, "groupnumber": TypeHealthPlanID,
	"account": TypeAccount, "accountnumber": TypeAccount, "acct": TypeAccount, "iban": TypeAccount, "bankaccount": TypeAccount,
	"creditcard": TypeCreditCard, "cardnumber": TypeCreditCard, "ccnumber": TypeCreditCard, "pan": TypeCreditCard,
	"license": TypeLicense, "licence": TypeLicense, "licensenumber": TypeLicense, "driverslicense": TypeLicense,
	"dea": TypeLicense, "npi": TypeID,
	"vin": TypeVehicleID, "licenseplate": TypeVehicleID, "plate": TypeVehicleID,
	"serial": TypeDeviceID, "serialnumber": TypeDeviceID, "imei": TypeDeviceID, "macaddress": TypeDeviceID, "deviceid": TypeDeviceID,
	"url": TypeURL, "website": TypeURL, "homepage": TypeURL,
	"ip": TypeIP, "ipaddress": TypeIP, "clientip": TypeIP,
	"age": TypeAge, "passport": TypeID, "passportnumber": TypeID,
}

// ClassifyColumnName returns the PHI a column holds judging by its name
// ("dob", "patient_phone", "emailAddress"), or TypeNone.
func ClassifyColumnName(name string) EntityType {
	words := splitIdent(name)
	if len(words) == 0 {
		return TypeNone
	}
	// The whole name joined, then the longest run of words, then single
	// words from the right ("patient_first_name" -> "firstname").
	if t, ok := columnWords[strings.Join(words, "")]; ok {
		return t
	}
	for n := len(words) - 1; n >= 2; n-- {
		for i := len(words) - n; i >= 0; i-- {
			if t, ok := columnWords[strings.Join(words[i:i+n], "")]; ok {
				return t
			}
		}
	}
	last := words[len(words)-1]
	if t, ok := columnWords[last]; ok {
		return t
	}
	if last == "name" {
		if len(words) == 1 {
			return TypeName
		}
		switch words[len(words)-2] {
		case "patient", "first", "last", "full", "given", "family", "middle", "maiden", "contact", "guardian",
			"mother", "father", "spouse", "provider", "doctor", "physician", "clinician", "nurse", "member", "subscriber", "person", "user":
			return TypeName
		}
	}
	if last == "date" || last == "dt" {
		for _, w := range words[:len(words)-1] {
			switch w {
			case "birth", "death", "admit", "admission", "discharge", "visit", "service", "encounter", "appointment", "surgery", "procedure":
				return TypeDate
			}
		}
	}
	if last == "number" || last == "no" || last == "num" || last == "id" {
		if t, ok := columnWords[strings.Join(words[:len(words)-1], "")]; ok {
			return t
		}
	}
	return TypeNone
}

// splitIdent splits snake_case, kebab-case and camelCase into lower-case words.
func splitIdent(s string) []string {
	var words []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_' || c == '-' || c == ' ' || c == '.':
			flush()
		case 'A' <= c && c <= 'Z' && i > 0 && 'a' <= s[i-1] && s[i-1] <= 'z':
			flush()
			cur = append(cur, c)
		default:
			cur = append(cur, c)
		}
	}
	flush()
	return words
}

// valueVote looks at one value of a column and says which single kind of
// PHI fills it, if any: a value that is one finding covering most of it.
func valueVote(v []byte, found []Finding) EntityType {
	if len(found) != 1 {
		return TypeNone
	}
	n := 0
	for _, c := range v {
		if c != ' ' && c != '\t' {
			n++
		}
	}
	f := found[0]
	if n == 0 || (f.End-f.Start)*10 < n*8 {
		return TypeNone
	}
	return f.Type
}

// ClassifyValues returns the PHI type that fills most of the sample values
// (at least 75% of the non-empty ones), or TypeNone.
func (s *Scanner) ClassifyValues(values [][]byte) EntityType {
	var votes [numTypes]int
	n := 0
	for _, v := range values {
		if len(v) == 0 {
			continue
		}
		n++
		votes[valueVote(v, s.Scan(v))]++
	}
	best := TypeNone
	for t := TypeName; t < numTypes; t++ {
		if votes[t] > votes[best] {
			best = t
		}
	}
	if best != TypeNone && votes[best]*4 >= n*3 {
		return best
	}
	return TypeNone
}
