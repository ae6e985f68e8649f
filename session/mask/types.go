package mask

// kind groups PostgreSQL types that are masked the same way.
type kind uint8

const (
	kindOther  kind = iota // unknown type: any action gives NULL
	kindText               // text, varchar, name, unknown
	kindBpchar             // char(n): padded to n
	kindChar               // "char": one byte
	kindBytea
	kindBool
	kindInt2
	kindInt4
	kindInt8
	kindOID
	kindFloat4
	kindFloat8
	kindNumeric
	kindMoney
	kindJSON
	kindJSONB
	kindXML
	kindDate
	kindTime
	kindTimetz
	kindTimestamp
	kindTimestamptz
	kindInterval
	kindUUID
	kindInet
	kindCidr
	kindMacaddr
)

// PostgreSQL type OIDs this package knows (pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidJSON        = 114
	oidXML         = 142
	oidCidr        = 650
	oidFloat4      = 700
	oidFloat8      = 701
	oidUnknown     = 705
	oidMoney       = 790
	oidMacaddr     = 829
	oidInet        = 869
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidTimetz      = 1266
	oidNumeric     = 1700
	oidUUID        = 2950
	oidJSONB       = 3802
)

var scalarKinds = map[uint32]kind{
	oidBool: kindBool, oidBytea: kindBytea, oidChar: kindChar, oidName: kindText,
	oidInt8: kindInt8, oidInt2: kindInt2, oidInt4: kindInt4, oidText: kindText,
	oidOID: kindOID, oidJSON: kindJSON, oidXML: kindXML, oidCidr: kindCidr,
	oidFloat4: kindFloat4, oidFloat8: kindFloat8, oidUnknown: kindText, oidMoney: kindMoney,
	oidMacaddr: kindMacaddr, oidInet: kindInet, oidBpchar: kindBpchar, oidVarchar: kindText,
	oidDate: kindDate, oidTime: kindTime, oidTimestamp: kindTimestamp, oidTimestamptz: kindTimestamptz,
	oidInterval: kindInterval, oidTimetz: kindTimetz, oidNumeric: kindNumeric, oidUUID: kindUUID,
	oidJSONB: kindJSONB,
}

// arrayElem maps array type OIDs to their element type OIDs.
var arrayElem = map[uint32]uint32{
	1000: oidBool, 1001: oidBytea, 1002: oidChar, 1003: oidName, 1016: oidInt8,
	1005: oidInt2, 1007: oidInt4, 1009: oidText, 1028: oidOID, 199: oidJSON,
	143: oidXML, 651: oidCidr, 1021: oidFloat4, 1022: oidFloat8, 791: oidMoney,
	1040: oidMacaddr, 1041: oidInet, 1014: oidBpchar, 1015: oidVarchar, 1182: oidDate,
	1183: oidTime, 1115: oidTimestamp, 1185: oidTimestamptz, 1187: oidInterval,
	1270: oidTimetz, 1231: oidNumeric, 2951: oidUUID, 3807: oidJSONB,
}

// typeOf returns the kind of oid and, for arrays, the kind of its elements.
func typeOf(oid uint32) (k kind, isArray bool) {
	if e, ok := arrayElem[oid]; ok {
		return scalarKinds[e], true
	}
	return scalarKinds[oid], false
}

func (k kind) textLike() bool { return k == kindText || k == kindBpchar || k == kindChar }

// charLimit returns the length limit in characters that typmod puts on
// varchar(n) and char(n) values, or -1 for none.
func charLimit(k kind, typmod int32) int {
	if (k == kindText || k == kindBpchar) && typmod >= 5 {
		return int(typmod - 4)
	}
	return -1
}
