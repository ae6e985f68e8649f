// Package synth generates synthetic patients for tests, the demo and the
// benchmarks: a small clinic schema (patients, encounters, prescriptions)
// filled with realistic protected health information: names, dates of birth,
// SSNs, medical record numbers, phones, e-mail and street addresses,
// insurance member ids, and free-text clinical notes that mention them in
// natural prose, next to look-alikes that are not PHI (ICD-10 codes, NDC
// product codes, doses, lab values, blood pressures) so that maskers can be
// tested for both misses and false alarms.
//
// Generation is deterministic: the same (n, seed) always yields the same
// rows, byte for byte, whichever way they are written (COPY text, or loaded
// with pgx). Every person in it is made up from small embedded lists; the
// package must never read, embed or emit data about real people.
package synth
