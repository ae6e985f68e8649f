// Package mask finds protected health information (PHI) and masks it, keeping
// every masked value a valid value of its PostgreSQL type and wire format
// (or of its JSON type) so that pgx, psql and libpq decode masked rows.
//
// It is pure code: no I/O, no clock, no network, no context, no logging. It
// must never panic on any input bytes, and the per-value paths
// ([Plan.AppendValue], [Scanner.Scan]) must not allocate once warm.
//
// # Profiles and plans (the proxy's API)
//
// [Compile] turns a [ProfileConfig] (YAML) and the deployment's [Keys] into
// an immutable [Profile]. For every result set the proxy calls
// [Profile.Plan] with the RowDescription's columns ([Column], [Params]);
// when [Plan.Active] is false rows pass untouched, otherwise every column
// where [Plan.Masked] is true goes through [Plan.AppendValue]. When the
// result set ends, [Plan.Applied] says, per masked column, which rule or
// source masked it, how many values were masked, scanned and found clean,
// or passed without being fully read (and why), and [Plan.Close] returns
// its scanning buffers to a pool. A Plan is used by one goroutine; a
// Profile is shared. [Profile.MaskText] masks free text that is not a
// column value: notification payloads, parameter values, error and notice
// fields, COPY text.
//
// A column is masked by the first of these that applies:
//
//  1. [Column.Withhold]: every value becomes NULL. The proxy sets it for
//     outputs whose lineage it could not determine.
//  2. [Column.Derived]: an output computed from base columns (an
//     expression, a cast, an aggregate, an array or row constructor, a
//     whole-row reference) is masked whole if a plain column from any of
//     them would be masked in any way (by 3, 4 or 5 below): NULL if one of
//     them would be NULL, else redact applied to the output's own type. A
//     partial reveal (keep-last-4, hash, pseudonym, date-shift, generalize,
//     scanning) is never applied to a derived value: substr(ssn, 1, 4)
//     would come out whole under keep-last-4, reverse(name) defeats the
//     detectors, and a keyed hash of an expression can be matched against
//     the hash of a guess sent in the same query (UNION SELECT 'guess').
//     A derived output whose sources nothing masks is treated as below.
//  3. the first configured rule ([RuleConfig]) whose column
//     ("schema.table.column" or "table.column") or pattern matches;
//  4. with content detection on (ProfileConfig.Detect, see
//     [HIPAAProfileConfig]), its class: [ClassifyColumnName] on the source
//     column and output names ("dob", "patient_phone"), or, for text
//     columns, the first 16 values (12 that are wholly one kind of PHI
//     classify the column); a classified column is masked whole with the
//     action for its type (DetectConfig.ClassActions);
//  5. with content detection on, every output that can carry text is
//     scanned value by value (the second layer, behind 1 to 4) and only
//     the PHI found inside is replaced ("[NAME]", or stars where a tag
//     would overflow varchar(n)): text, varchar, char(n), name; json and
//     jsonb string by string; xml inside character data, attribute values,
//     comments and CDATA (a value with PHI anywhere else becomes NULL);
//     bytea, whose bytes are read as text and rewritten in the value's
//     format (hex, escape or binary); arrays of any of these, element by
//     element, in text and binary format; and every type this package does
//     not know (records, composites, enums, extension types), whose text
//     form is scanned (in binary format: the fields of a record or array,
//     or the raw bytes) and which becomes NULL when PHI is found, since it
//     cannot be edited and keep its type.
//
// Actions ([Action]): redact (text "[redacted]" cut or padded to the type,
// "char" '*', numbers 0, bytea empty, json a string, xml text, arrays
// element by element with their dimensions; bool, dates, times, uuid and
// network types NULL), keep-last-4, hash (keyed HMAC-SHA256,
// deterministic, shape-preserving so joins still work), null, pseudonym
// (hash, but names become other names), date-shift (dates move back a keyed
// number of days per subject: the person a row is about, named per table by
// [Subjects] and given row by row with [Plan.SetRowSubject]; a date whose
// subject the row does not give is NULL), generalize (dates keep
// the year, ZIP codes three digits, ages over 89 become 90) and detect.
// Types the package does not know become NULL under every action but
// detect, which passes a value it finds nothing in.
//
// # Content detection
//
// A [Detector] ([NewDetector], [DefaultDetector]) holds the dictionaries
// (census first and last names, US cities, keyword lists, embedded from
// data/) and the settings ([DetectConfig]); a [Scanner] finds [Finding]s of
// the [EntityType]s (NAME, DATE, PHONE, ...) in one pass over the text: a
// tokenizer with byte classes, dictionary look-ups only for capitalized
// words and a few trigger words, and validators (Luhn, mod 97, SSN ranges,
// NANP and libphonenumber calling codes, DEA, NPI, VIN, MBI check digits)
// before anything is reported.
//
// Values packed together by string_agg, arrays, records and CSV are found
// as if spaces separated them: brackets, braces, double quotes, pipes and
// backslashes are spaces to the tokenizer; a comma or semicolon with no
// space around it separates words, and so does a parenthesis or colon
// between letters; between digits a comma joins a number
// only as a thousands group, and a slash or colon only after a single
// group of at most four digits (a date, a time, a ratio), so
// "123-45-6789,234-56-7890" and "(1,123-45-6789,John)" are read as lists.
// [AppendTagged] replaces findings with their type, as `phigate mask`
// prints them.
//
// Other shapes of data: [Plan.AppendJSON] masks JSON documents keeping
// every JSON type; a [Stream] masks text that arrives in pieces (terminal
// output, COPY data) without missing PHI split across reads.
//
// # Masking proof
//
// [Plan.SetProofSink] receives a [Proof] (rule, detector, type, span, raw
// bytes) for every masked value or span, valid only during the call;
// without a sink nothing is collected. That is all of the proof this
// package holds: no data key, no hashing or sealing of raw values. The
// proof itself is session/proof's: a per-session data key, the keyed hash
// of each raw value, the sealing of raw values (AES-256-GCM), the batching
// of Proofs into mask.proof events and the sealing of the data key with
// HPKE to the auditors' public key. Nodes hold only that public key, and a
// data key only while its session lasts.
//
// # Out of scope
//
// Lineage is the proxy's: this package trusts Column.Source, Derived and
// Withhold as given. Dates, numbers, uuid, inet and other types that
// cannot carry free text are masked only by rules, classes and lineage,
// never scanned (a date column no rule or name covers passes). Text
// encoded inside bytea (compressed, UTF-16, a PDF's streams) is read only
// as far as its bytes are text; PHI spelled across markup in xml, escaped
// in a record's quoting, or split across values of different rows is not
// reassembled. Side channels that carry no column value (timing, row
// counts, errors a query provokes on purpose) are the proxy's to close,
// with [Profile.MaskText] for the message texts.
//
// This package never logs, and nothing it returns is meant for logs: masked
// values are safe to show, raw values and proofs are PHI.
package mask
