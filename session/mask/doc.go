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
// result set ends, [Plan.Applied] says which rule masked which column and
// how many values, and [Plan.Close] returns its scanning buffers to a pool.
// A Plan is used by one goroutine; a Profile is shared.
//
// A column is masked by, in order:
//
//  1. the first configured rule ([RuleConfig]) whose column
//     ("schema.table.column" or "table.column") or pattern matches;
//  2. with content detection on (ProfileConfig.Detect, see
//     [HIPAAProfileConfig]), its class: [ClassifyColumnName] on the source
//     column and output names ("dob", "patient_phone"), or, for text
//     columns, the first 16 values (12 that are wholly one kind of PHI
//     classify the column); a classified column is masked whole with the
//     action for its type (DetectConfig.ClassActions);
//  3. with content detection on, text, varchar, char(n), json and jsonb
//     columns are scanned value by value and only the PHI found inside is
//     replaced ("[NAME]", or stars where a tag would overflow varchar(n)).
//
// Actions ([Action]): redact (text "[redacted]" cut or padded to the type,
// numbers 0, json a string), keep-last-4, hash (keyed HMAC-SHA256,
// deterministic, shape-preserving so joins still work), null, pseudonym
// (hash, but names become other names), date-shift (dates move back a keyed
// number of days per subject, see [Plan.SetSubject]), generalize (dates keep
// the year, ZIP codes three digits, ages over 89 become 90) and detect.
// Types the package does not know become NULL under every action.
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
// before anything is reported. [AppendTagged] replaces findings with their
// type, as `phigate mask` prints them.
//
// Other shapes of data: [Plan.AppendJSON] masks JSON documents keeping
// every JSON type; a [Stream] masks text that arrives in pieces (terminal
// output, COPY data) without missing PHI split across reads.
//
// # Masking proof
//
// [Plan.SetProofSink] receives a [Proof] (rule, detector, type, span, raw
// bytes) for every masked value or span; without a sink nothing is
// collected. A [Sealer] turns a Proof into a [ProofRecord]: a keyed hash of
// the raw value and the raw value sealed with AES-256-GCM under a
// per-session data key, which [WrapKey] seals under the master key.
//
// This package never logs, and nothing it returns is meant for logs: masked
// values are safe to show, raw values and proofs are PHI.
package mask
