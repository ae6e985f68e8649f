package mask

import "strings"

// Check-digit validators for identifiers. They take the identifier's
// characters with separators removed.

// luhn reports whether the digits pass the Luhn check.
func luhn(d []byte) bool {
	sum, dbl := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		c := d[i]
		if c < '0' || c > '9' {
			return false
		}
		n := int(c - '0')
		if dbl {
			n *= 2
			if n > 9 {
				n -= 9
			}
		}
		sum += n
		dbl = !dbl
	}
	return len(d) > 0 && sum%10 == 0
}

// validCard checks length, issuer prefix and Luhn of a payment card number.
func validCard(d []byte) bool {
	if len(d) < 13 || len(d) > 19 || !luhn(d) {
		return false
	}
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p4 := p2*100 + int(d[2]-'0')*10 + int(d[3]-'0')
	switch {
	case d[0] == '4': // Visa
		return len(d) == 13 || len(d) == 16 || len(d) == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return len(d) == 16
	case p2 == 34 || p2 == 37: // Amex
		return len(d) == 15
	case p4 == 6011 || p2 == 65 || p4 >= 6440 && p4 <= 6499: // Discover
		return len(d) >= 16
	case p2 == 35: // JCB
		return len(d) >= 16
	case p2 == 36 || p2 == 38 || p4 >= 3000 && p4 <= 3059: // Diners
		return len(d) >= 14
	case p2 == 62: // UnionPay
		return len(d) >= 16
	}
	return false
}

// validNPI checks a 10-digit National Provider Identifier: Luhn over the
// digits prefixed with 80840.
func validNPI(d []byte) bool {
	if len(d) != 10 || (d[0] != '1' && d[0] != '2') {
		return false
	}
	var b [15]byte
	copy(b[:], "80840")
	copy(b[5:], d)
	return luhn(b[:])
}

// validDEA checks a DEA registration number: two letters and seven digits,
// (d1+d3+d5) + 2*(d2+d4+d6) ends in d7.
func validDEA(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	a := upper(d[0])
	if strings.IndexByte("ABCDEFGHJKLMPRSTUX", a) < 0 {
		return false
	}
	if b := upper(d[1]); !(b >= 'A' && b <= 'Z' || b == '9') {
		return false
	}
	var n [7]int
	for i := 0; i < 7; i++ {
		c := d[2+i]
		if c < '0' || c > '9' {
			return false
		}
		n[i] = int(c - '0')
	}
	return (n[0]+n[2]+n[4]+2*(n[1]+n[3]+n[5]))%10 == n[6]
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 32
	}
	return c
}

func isLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// validMBI checks a Medicare Beneficiary Identifier (11 characters:
// C A AN N A AN N A A N N, letters without S L O I B Z).
func validMBI(d []byte) bool {
	if len(d) != 11 {
		return false
	}
	mbiLetter := func(c byte) bool {
		c = upper(c)
		return c >= 'A' && c <= 'Z' && c != 'S' && c != 'L' && c != 'O' && c != 'I' && c != 'B' && c != 'Z'
	}
	for i, c := range d {
		switch i {
		case 0:
			if c < '1' || c > '9' {
				return false
			}
		case 1, 4, 7, 8:
			if !mbiLetter(c) {
				return false
			}
		case 2, 5:
			if !mbiLetter(c) && !isDigit(c) {
				return false
			}
		default:
			if !isDigit(c) {
				return false
			}
		}
	}
	return true
}

// validIBAN checks an IBAN: country letters, check digits, mod 97 == 1.
func validIBAN(d []byte) bool {
	if len(d) < 15 || len(d) > 34 || !isLetter(d[0]) || !isLetter(d[1]) || !isDigit(d[2]) || !isDigit(d[3]) {
		return false
	}
	rem := 0
	add := func(c byte) bool {
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case isLetter(c):
			v := int(upper(c)-'A') + 10
			rem = (rem*100 + v) % 97
		default:
			return false
		}
		return true
	}
	for _, c := range d[4:] {
		if !add(c) {
			return false
		}
	}
	for _, c := range d[:4] {
		if !add(c) {
			return false
		}
	}
	return rem == 1
}

// validVIN checks a 17-character vehicle identification number and its
// check digit (position 9).
func validVIN(d []byte) bool {
	if len(d) != 17 {
		return false
	}
	weights := [17]int{8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2}
	sum, letters, digits := 0, 0, 0
	for i, c := range d {
		c = upper(c)
		var v int
		switch {
		case isDigit(c):
			v = int(c - '0')
			digits++
		case c == 'I' || c == 'O' || c == 'Q':
			return false
		case c >= 'A' && c <= 'Z':
			v = vinValue[c-'A']
			letters++
		default:
			return false
		}
		sum += v * weights[i]
	}
	if letters == 0 || digits < 4 {
		return false
	}
	check := byte('0' + sum%11)
	if sum%11 == 10 {
		check = 'X'
	}
	return upper(d[8]) == check
}

var vinValue = [26]int{1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 0, 7, 0, 9, 2, 3, 4, 5, 6, 7, 8, 9}

// validSSN rejects area 000, 666 and 9xx, group 00 and serial 0000.
func validSSN(d []byte) bool {
	if len(d) != 9 {
		return false
	}
	area := atoi(d[:3])
	return area > 0 && area != 666 && area < 900 && atoi(d[3:5]) != 0 && atoi(d[5:]) != 0
}

// validNANP checks a 10-digit North American number: area and exchange do
// not start with 0 or 1, and the area is not N11.
func validNANP(d []byte) bool {
	if len(d) != 10 {
		return false
	}
	return d[0] >= '2' && d[3] >= '2' && !(d[1] == '1' && d[2] == '1')
}
