package chunk

import (
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/session/record"
)

var (
	firstNames = []string{"Maria", "James", "Aiko", "Olusegun", "Priya", "Lars", "Fatima", "Wei", "Carlos", "Ingrid", "Noah", "Amara"}
	lastNames  = []string{"Garcia", "Smith", "Tanaka", "Adeyemi", "Sharma", "Nilsson", "Haddad", "Chen", "Silva", "Berg", "Cohen", "Okafor"}
	statements = []string{
		"SELECT id, name, birth_date, mrn FROM patients WHERE id = $1",
		"SELECT e.id, e.code, e.started_at, e.provider_id FROM encounters e WHERE e.patient_id = $1 AND e.started_at >= $2 ORDER BY e.started_at DESC LIMIT 50",
		"UPDATE observations SET value = $1, updated_at = now() WHERE id = $2",
		"INSERT INTO notes (patient_id, author_id, body) VALUES ($1, $2, $3) RETURNING id",
		"SELECT m.name, m.dose, m.route FROM medications m JOIN prescriptions p ON p.medication_id = m.id WHERE p.patient_id = $1",
		"BEGIN", "COMMIT",
		"SELECT count(*) FROM claims WHERE status = $1 AND submitted_at > $2",
	}
)

// workload records n events of a mixed, realistic session: extended-protocol
// statements with varied parameters, results with masking, errors, and COPY
// data of synthetic patient rows. It returns the frames and their times.
func workload(t testing.TB, session string, n int) ([][]byte, []time.Time, int) {
	r := rand.New(rand.NewPCG(1, 2))
	c := record.NewChain(session)
	var out [][]byte
	var times []time.Time
	raw := 0
	at := t0
	cmd := uint64(0)
	for i := 0; i < n; i++ {
		at = at.Add(time.Duration(50+r.IntN(2000)) * time.Microsecond)
		ev := &record.Event{Time: at, Node: "n1", Identity: "agent-billing-7", Resource: "ehr-prod"}
		switch {
		case i == 0:
			ev.Kind, ev.Start = record.KindSessionStart, &record.SessionStart{}
		case i == n-1:
			ev.Kind, ev.End = record.KindSessionEnd, &record.SessionEnd{}
		case i%2 == 1 && r.IntN(20) == 0:
			var rows strings.Builder
			for k := 0; k < 40; k++ {
				fmt.Fprintf(&rows, "%d,%s,%s,%04d-%02d-%02d,%d\n", r.IntN(1e7), firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))], 1930+r.IntN(90), 1+r.IntN(12), 1+r.IntN(28), r.IntN(1e9))
			}
			ev.Kind, ev.Copy = record.KindCopyData, &record.CopyData{Data: []byte(rows.String())}
		case i%2 == 1:
			cmd++
			sql := statements[r.IntN(len(statements))]
			var params []record.Param
			for k := 0; k < strings.Count(sql, "$"); k++ {
				switch r.IntN(3) {
				case 0:
					params = append(params, record.Param{Value: fmt.Sprint(r.IntN(1e7))})
				case 1:
					params = append(params, record.Param{Value: fmt.Sprintf("2026-%02d-%02d", 1+r.IntN(12), 1+r.IntN(28))})
				default:
					params = append(params, record.Param{Value: firstNames[r.IntN(len(firstNames))] + " " + lastNames[r.IntN(len(lastNames))] + " reports " + fmt.Sprint(r.IntN(100))})
				}
			}
			ev.Kind = record.KindCommand
			ev.Command = &record.Command{ID: cmd, Protocol: record.ProtocolPostgres, Decision: "allow", Rule: "billing-read", Classes: []string{"read"},
				Postgres: &record.PostgresCommand{Flow: record.FlowExtended, Step: record.StepExecute, SQL: sql, Params: params}}
		default:
			ev.Kind = record.KindResult
			res := &record.Result{Command: cmd, Tag: fmt.Sprintf("SELECT %d", r.IntN(50)), Rows: int64(r.IntN(50)), Bytes: int64(r.IntN(20000)), DurationUS: int64(r.IntN(5000))}
			if r.IntN(30) == 0 {
				res.Error = &record.SQLError{Code: "23505", Message: fmt.Sprintf("duplicate key value violates unique constraint \"notes_pkey\" (id)=(%d)", r.IntN(1e6)), Source: "upstream"}
			}
			if r.IntN(3) == 0 {
				res.Masked = []record.MaskedColumn{{Column: "name", Source: "public.patients.name", Rule: "phi-name", Action: "redact", Values: int64(r.IntN(50))}, {Column: "birth_date", Source: "public.patients.birth_date", Rule: "phi-date", Action: "generalize", Values: int64(r.IntN(50))}}
			}
			ev.Result = res
		}
		b, err := c.Seal(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		raw += len(b)
		out = append(out, b)
		times = append(times, at)
	}
	return out, times, raw
}

func TestCompressionRatio(t *testing.T) {
	fr, times, raw := workload(t, "s-ratio", 20000)
	sealed := sealSession(t, "s-ratio", auditorKey(t).PublicKey(), fr, times, DefaultMaxBytes)
	stored := 0
	for _, s := range sealed {
		stored += len(s.Bytes)
	}
	ratio := float64(stored) / float64(raw)
	t.Logf("%d events, %d bytes of frames -> %d chunks, %d bytes stored: %.3f of raw (%.1fx)", len(fr), raw, len(sealed), stored, ratio, 1/ratio)
	if ratio > 0.5 {
		t.Errorf("stored %.2f of raw: compression is not working", ratio)
	}
}

// benchSession seals a session of about 8 MiB of frames in 1 MiB chunks.
func benchSession(b *testing.B) (chunks, manifests []Object, keys Keys, raw int) {
	fr, times, raw := workload(b, "s-bench", 60000)
	sealed := sealSession(b, "s-bench", auditorKey(b).PublicKey(), fr, times, DefaultMaxBytes)
	pub, priv, _ := ed25519.GenerateKey(nil)
	signer := NewSigner(priv)
	keys = Keys{signer.ID: {Node: "n1", Key: pub}}
	for _, s := range sealed {
		key := fmt.Sprintf("chunks/s-bench/%08d", s.Header.Seq)
		_, m, err := SignManifest(s, key, s.Header.LastTime, signer)
		if err != nil {
			b.Fatal(err)
		}
		chunks = append(chunks, Object{Key: key, Bytes: s.Bytes})
		manifests = append(manifests, Object{Key: key + ".manifest", Bytes: m})
	}
	return chunks, manifests, keys, raw
}

func stored(objs []Object) (n int) {
	for _, o := range objs {
		n += len(o.Bytes)
	}
	return n
}

// BenchmarkSeal measures compressing, encrypting and framing: MB/s of raw
// frames.
func BenchmarkSeal(b *testing.B) {
	fr, times, raw := workload(b, "s-bench", 60000)
	pub := auditorKey(b).PublicKey()
	b.SetBytes(int64(raw))
	b.ResetTimer()
	for b.Loop() {
		sealSession(b, "s-bench", pub, fr, times, DefaultMaxBytes)
	}
}

// BenchmarkVerify measures keyless verification of a whole session (chunks
// and manifests): MB/s of stored bytes, and raw-MB/s of recorded frames.
func BenchmarkVerify(b *testing.B) {
	chunks, manifests, keys, raw := benchSession(b)
	b.SetBytes(int64(stored(chunks) + stored(manifests)))
	b.ResetTimer()
	for b.Loop() {
		if fs := VerifySession("s-bench", chunks, manifests, keys); len(fs) != 0 {
			b.Fatal(fs)
		}
	}
	b.ReportMetric(float64(raw)*float64(b.N)/b.Elapsed().Seconds()/1e6, "raw-MB/s")
}

// BenchmarkOpen measures decryption and decompression with the auditor key.
func BenchmarkOpen(b *testing.B) {
	fr, times, raw := workload(b, "s-bench", 60000)
	key := auditorKey(b)
	sealed := sealSession(b, "s-bench", key.PublicKey(), fr, times, DefaultMaxBytes)
	o := NewOpener(key)
	b.SetBytes(int64(raw))
	b.ResetTimer()
	for b.Loop() {
		for _, s := range sealed {
			if _, _, err := o.Open(s.Bytes); err != nil {
				b.Fatal(err)
			}
		}
	}
}
