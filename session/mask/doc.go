// Package mask removes protected health information (PHI) from values on
// their way to a client, keeping every masked value a valid value of its
// PostgreSQL type and wire format so that pgx, psql and libpq decode it.
//
// It is pure code: no I/O, no clock, no network, no context, no logging.
// It must never panic on any input bytes, and the per-value path
// ([Plan.AppendValue]) must not allocate.
//
// # Column rules
//
// A masking profile ([ProfileConfig], compiled by [Compile]) lists rules that
// select result columns by their source column ("schema.table.column" or
// "table.column") or by a case-insensitive regular expression over the source
// column name and the output name, and name an action:
//
//	redact       text-like -> "[redacted]" (cut or padded to varchar(n)/char(n)),
//	             numbers -> 0, bytea -> empty, json -> "[redacted]" string, others -> NULL
//	keep-last-4  text-like -> every letter and digit but the last four becomes '*',
//	             separators kept ("123-45-6789" -> "***-**-6789"); integers -> value mod 10000;
//	             others -> NULL
//	hash         keyed (HMAC-SHA256 with [Keys.Pseudonym]) and deterministic: text keeps
//	             its shape (letters stay letters, digits stay digits), integers stay
//	             integers of the same width, uuid stays uuid, bytea becomes the 32-byte
//	             digest; others -> NULL. Same input and key give the same output in
//	             text and binary format, so joins and grouping on masked columns work.
//	null         SQL NULL
//
// The first matching rule wins, in configuration order.
//
// # Using it from a proxy
//
// Compile a [Profile] once per configuration. For every result set, call
// [Profile.Plan] with the columns of the RowDescription; if [Plan.Active] is
// false the rows can be forwarded untouched. Otherwise, for each column i
// where [Plan.Masked] is true, replace the value with [Plan.AppendValue].
// A Plan is used by one goroutine at a time; a Profile is safe for
// concurrent use. When the result set ends, [Plan.Applied] says which rule
// masked which column and how many values it changed.
package mask
