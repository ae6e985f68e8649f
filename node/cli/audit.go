package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
)

// Exit codes of phigate audit verify.
const (
	auditExitFindings = 1 // the store was read and something does not verify
	auditExitError    = 2 // the check could not be made (flags, store, keys)
)

// storeKeysWarning is said whenever the keys come from the store itself.
const storeKeysWarning = "keys read from the store are only as trustworthy as the store: whoever can write to it can add a key of their own. Pin them with --keys FILE, or read them from the cluster with --api"

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Check the recordings shipped to object storage",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return exitError{code: auditExitError, err: fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAuditVerifyCommand())
	return cmd
}

type auditVerifyFlags struct {
	from, to, session string
	store             storeFlags
	keysFile, api, ca string
	tokenFile         string
	asJSON            bool
	concurrency       int
	digestGrace       time.Duration
}

func newAuditVerifyCommand() *cobra.Command {
	var f auditVerifyFlags
	cmd := &cobra.Command{
		Use:   "verify (--store URL | --config FILE) [--from T --to T | --session ID] [--keys FILE | --api URL]",
		Short: "Verify every chunk, manifest, index entry and hourly digest in a store",
		Long: `Verify a recording store without any private key: every session the index lists
in [--from, --to) (default: the last 24 hours) and every session a digest of those
hours lists: chunk chain, manifests and their signatures, the index entries
against the chunks present; then each node's hourly digest chain over the hours
its published keys cover, and that every chunk listed is present with its hash.
Every finding is printed with where it is: node, hour, session, chunk, event,
object.

The digest of an hour is due --digest-grace after the hour ends: an hour whose
digest is not due yet is not a gap, and the chunks sealed in it are not reported
as unlisted. A session with neither its closing chunk nor an index entry is
open (still being recorded), not truncated.

Times are RFC 3339 (2026-11-30T10:00:00Z) or a date (2026-11-30, midnight UTC);
the range is half-open: --from 2026-11-30 --to 2026-12-01 is the 30th.

The node keys come from --keys FILE (a JSON array of published keys), from the
cluster (--api https://HOST:PORT, GET /v1/keys; --cacert for a private CA), or,
by default, from the store's keys/ objects, which are only as trustworthy as the
store.

--store is a store location: file:///DIR or s3://BUCKET?endpoint=https://HOST
(credentials from --s3-credentials FILE, or PHIGATE_S3_ACCESS_KEY and
PHIGATE_S3_SECRET_KEY); or --config names the node whose store (store.location,
store.credentials_file) to verify.

Exit status: 0 everything verified; 1 findings; 2 the check could not be made.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return exitError{code: auditExitError, err: fmt.Errorf("unexpected argument %q (name a session with --session)", args[0])}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := runAuditVerify(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f)
			var ee exitError
			if err != nil && !errors.As(err, &ee) {
				err = exitError{code: auditExitError, err: err}
			}
			return err
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return exitError{code: auditExitError, err: err}
	})
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "start of the range (RFC 3339 or YYYY-MM-DD; default: 24 hours before --to)")
	fl.StringVar(&f.to, "to", "", "end of the range, excluded (default: now)")
	fl.StringVar(&f.session, "session", "", "verify this session only (over the hours it was sealed in, or --from/--to)")
	f.store.add(cmd, true)
	fl.StringVar(&f.keysFile, "keys", "", "JSON file of the published node keys")
	fl.StringVar(&f.api, "api", "", "read the published node keys from a node's API, https://HOST:PORT (env PHIGATE_API)")
	fl.StringVar(&f.ca, "cacert", "", "PEM file of the CA that signed the API's certificate (env PHIGATE_CACERT); default: the system's roots")
	fl.StringVar(&f.tokenFile, "token-file", "", "with --api: an admin token (env PHIGATE_TOKEN) to also compare the store with the chunk anchors in the cluster state")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.IntVar(&f.concurrency, "concurrency", archive.DefaultConcurrency, "objects fetched at once")
	fl.DurationVar(&f.digestGrace, "digest-grace", archive.DefaultDigestGrace, "how long after an hour ends its digest is due")
	return cmd
}

// parseTime reads RFC 3339 or a date (midnight UTC).
func parseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-11-30T10:00:00Z) or a date (2026-11-30)", flag, s)
}

// storeFlags name a store: --store, else the node's (store.location of
// --config, or DataDir/store).
type storeFlags struct {
	location, credentials string
	configPath, dataDir   string
}

func (f *storeFlags) add(cmd *cobra.Command, withNode bool) {
	cmd.Flags().StringVar(&f.location, "store", "", "the store: file:///DIR or s3://BUCKET?endpoint=https://HOST:PORT (env PHIGATE_STORE; default: the node's, from --config)")
	cmd.Flags().StringVar(&f.credentials, "s3-credentials", "", "file of access_key = / secret_key = lines (default: the node's store.credentials_file, else PHIGATE_S3_ACCESS_KEY and PHIGATE_S3_SECRET_KEY)")
	if withNode {
		cmd.Flags().StringVarP(&f.configPath, "config", "c", "", "the node's YAML configuration (its store section names the store)")
	}
}

// open opens the store the flags name for reading. required: without
// --store or a node configuration, fail (else return a nil store when the
// node's default directory store does not exist).
func (f *storeFlags) open(required bool) (blob.Store, blob.Location, error) {
	if location := firstNonEmpty(f.location, os.Getenv("PHIGATE_STORE")); location != "" {
		loc, err := blob.ParseLocation(location)
		if err != nil {
			return nil, loc, err
		}
		return openLocation(loc, f.credentials, true)
	}
	if required && f.configPath == "" {
		return nil, blob.Location{}, errors.New("--store (or PHIGATE_STORE) or --config is required: file:///DIR or s3://BUCKET?endpoint=https://HOST:PORT")
	}
	cfg := &node.Config{}
	if f.configPath != "" {
		c, err := node.LoadConfig(f.configPath)
		if err != nil {
			return nil, blob.Location{}, err
		}
		cfg = c
	} else if f.dataDir != "" {
		cfg.Node.DataDir = f.dataDir
	}
	loc, err := node.StoreLocation(cfg)
	if err != nil {
		return nil, loc, err
	}
	return openLocation(loc, firstNonEmpty(f.credentials, cfg.Store.CredentialsFile), required || cfg.Store.Location != "")
}

// openLocation opens a store for reading. A local directory must hold a
// store already (blob.NewFS would create one: a mistyped path must not
// verify as an empty store); when it does not and required is false,
// the store is nil.
func openLocation(loc blob.Location, credentialsFile string, required bool) (blob.Store, blob.Location, error) {
	if loc.Scheme == "file" {
		if fi, err := os.Stat(filepath.Join(loc.Dir, "data")); err != nil || !fi.IsDir() {
			if !required {
				return nil, loc, nil
			}
			return nil, loc, fmt.Errorf("store %s: not a store directory (no data/ in it)", loc)
		}
	}
	st, err := blob.Open(loc, func() (blob.Credentials, error) {
		if credentialsFile != "" {
			return blob.CredentialsFromFile(credentialsFile)
		}
		return blob.CredentialsFromEnv()
	})
	return st, loc, err
}

// keySource says where the verifier's keys came from.
type keySource struct {
	Source  string `json:"source"` // "file", "api" or "store"
	Where   string `json:"where"`
	Pinned  bool   `json:"pinned"`
	Keys    int    `json:"keys"`
	Nodes   int    `json:"nodes"`
	Warning string `json:"warning,omitempty"`
}

// loadKeys reads the published keys from --keys, --api (or PHIGATE_API),
// else the store.
func loadKeys(ctx context.Context, f auditVerifyFlags, store blob.Store, loc blob.Location) (chunk.Keys, keySource, error) {
	var (
		list []archive.PublishedKey
		src  keySource
		err  error
	)
	api := firstNonEmpty(f.api, os.Getenv("PHIGATE_API"))
	switch {
	case f.keysFile != "" && f.api != "":
		return nil, src, errors.New("give --keys or --api, not both")
	case f.keysFile != "":
		src = keySource{Source: "file", Where: f.keysFile, Pinned: true}
		var b []byte
		if b, err = os.ReadFile(f.keysFile); err == nil {
			list, err = archive.ParsePublishedKeys(b)
		}
		if err != nil {
			return nil, src, fmt.Errorf("--keys: %w", err)
		}
	case api != "":
		src = keySource{Source: "api", Where: strings.TrimRight(api, "/") + "/v1/keys", Pinned: true}
		if list, err = fetchPublishedKeys(ctx, api, firstNonEmpty(f.ca, os.Getenv("PHIGATE_CACERT"))); err != nil {
			return nil, src, err
		}
	default:
		src = keySource{Source: "store", Where: loc.String() + " " + archive.KeysPrefix, Warning: storeKeysWarning}
		list, err = archive.StoreKeys(ctx, store)
		if err != nil && len(list) == 0 {
			return nil, src, err
		}
		if err != nil {
			// Malformed key objects are skipped; say so.
			src.Warning += "; skipped: " + err.Error()
		}
	}
	keys, err := archive.Keys(list)
	if err != nil {
		return nil, src, err
	}
	nodes := map[string]bool{}
	for _, k := range keys {
		nodes[k.Node] = true
	}
	src.Keys, src.Nodes = len(keys), len(nodes)
	if len(keys) == 0 {
		return nil, src, fmt.Errorf("no published node keys in %s %s: nothing can verify", src.Source, src.Where)
	}
	return keys, src, nil
}

// fetchPublishedKeys asks a node's API for the published node keys: GET
// {api}/v1/keys, a JSON array of archive.PublishedKey; public keys, so no
// token is sent.
func fetchPublishedKeys(ctx context.Context, api, caFile string) ([]archive.PublishedKey, error) {
	u, err := url.Parse(api)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--api %q: want https://HOST:PORT", api)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s holds no PEM certificate", caFile)
		}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(api, "/")+"/v1/keys", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("published keys: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("published keys: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("published keys: GET %s: %s", req.URL.Redacted(), resp.Status)
	}
	list, err := archive.ParsePublishedKeys(b)
	if err != nil {
		return nil, fmt.Errorf("published keys from %s: %w", req.URL.Redacted(), err)
	}
	return list, nil
}

func runAuditVerify(ctx context.Context, stdout, stderr io.Writer, f auditVerifyFlags) error {
	from, err := parseTime("from", f.from)
	if err != nil {
		return err
	}
	to, err := parseTime("to", f.to)
	if err != nil {
		return err
	}
	store, loc, err := f.store.open(true)
	if err != nil {
		return err
	}
	keys, src, err := loadKeys(ctx, f, store, loc)
	if err != nil {
		return err
	}
	opts := archive.Options{From: from, To: to, Session: f.session, Concurrency: f.concurrency, DigestGrace: f.digestGrace}
	if f.session == "" && (from.IsZero() || to.IsZero()) {
		now := time.Now().UTC()
		if opts.To.IsZero() {
			opts.To = now
		}
		if opts.From.IsZero() {
			opts.From = opts.To.Add(-24 * time.Hour)
		}
	}
	bar := newProgressBar(stderr)
	if bar != nil {
		opts.Progress = bar.update
	}
	report, err := archive.Verify(ctx, store, keys, opts)
	if bar != nil {
		bar.clear()
	}
	if err != nil {
		return err
	}
	if err := checkAnchors(ctx, f, store, report); err != nil {
		return err
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		err = enc.Encode(struct {
			Store  string          `json:"store"`
			Keys   keySource       `json:"keys"`
			Report *archive.Report `json:"report"`
		}{loc.String(), src, report})
	} else {
		err = printAuditReport(stdout, loc, src, report)
	}
	if err != nil {
		return err
	}
	if !report.OK() {
		return exitError{code: auditExitFindings, err: fmt.Errorf("audit verify: %d findings", len(report.Findings))}
	}
	return nil
}

func printAuditReport(w io.Writer, loc blob.Location, src keySource, r *archive.Report) error {
	var b strings.Builder
	if len(r.Findings) > 0 {
		b.WriteString("findings:\n")
		for _, f := range r.Findings {
			b.WriteString("  " + printable(f.String()) + "\n")
		}
		b.WriteString("\n")
	}
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label, printable(fmt.Sprintf(format, args...)))
	}
	line("store", "%s", loc)
	line("range", "%s .. %s (digests due for the hours ending by %s)", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), r.DigestsDue.Format(time.RFC3339))
	pinned := "pinned"
	if !src.Pinned {
		pinned = "NOT pinned"
	}
	line("keys", "%d keys of %d nodes from %s %s (%s)", src.Keys, src.Nodes, src.Source, src.Where, pinned)
	if src.Warning != "" {
		line("warning", "%s", src.Warning)
	}
	open := ""
	if len(r.Open) > 0 {
		open = fmt.Sprintf(", %d open (still recording: %s)", len(r.Open), strings.Join(r.Open, " "))
	}
	line("sessions", "%d verified%s", r.Sessions, open)
	line("chunks", "%d chunks, %d manifests, %s stored", r.Chunks, r.Manifests, megabytes(r.Bytes))
	var nodes []string
	for _, n := range r.Nodes {
		nodes = append(nodes, fmt.Sprintf("%s %d/%d hours", n.Node, n.Digests, n.Hours))
	}
	line("digests", "%d (%s)", r.Digests, strings.Join(nodes, ", "))
	if r.Anchors > 0 {
		line("anchors", "%d compared with the cluster state", r.Anchors)
	}
	rate := "-"
	if s := r.Elapsed.Seconds(); s > 0 {
		rate = fmt.Sprintf("%.1f MB/s", float64(r.Bytes)/1e6/s)
	}
	line("duration", "%s (%s)", r.Elapsed.Round(time.Millisecond), rate)
	if r.OK() {
		line("findings", "none")
		line("result", "OK: everything verified")
	} else {
		counts := r.Counts()
		problems := make([]string, 0, len(counts))
		for p := range counts {
			problems = append(problems, string(p))
		}
		sort.Strings(problems)
		for i, p := range problems {
			problems[i] = fmt.Sprintf("%s %d", p, counts[chunk.Problem(p)])
		}
		line("findings", "%d (%s)", len(r.Findings), strings.Join(problems, ", "))
		line("result", "FAILED")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printable escapes control characters: ids and keys in a store were
// chosen by whoever wrote to it, and must not drive the terminal.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func megabytes(n int64) string {
	if n < 1e6 {
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// progressBar draws the sessions verified on a terminal, at most ten
// times a second.
type progressBar struct {
	w    io.Writer
	last time.Time
}

// newProgressBar returns a bar on w when w is a terminal, else nil.
func newProgressBar(w io.Writer) *progressBar {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return &progressBar{w: w}
}

// isTerminal says whether f is a character device other than /dev/null
// (golang.org/x/term is not a dependency; this is close enough for
// deciding whether to draw a bar).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}

func (p *progressBar) update(done, total int) {
	if now := time.Now(); done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	} else {
		p.last = now
	}
	const width = 30
	fill := width
	if total > 0 {
		fill = done * width / total
	}
	pct := 100
	if total > 0 {
		pct = done * 100 / total
	}
	fmt.Fprintf(p.w, "\rverifying [%s%s] %d/%d sessions %3d%%", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), done, total, pct)
}

func (p *progressBar) clear() { fmt.Fprint(p.w, "\r\033[K") }

// checkAnchors compares the store with the cluster state's anchors of the
// sessions sealed in the range (--api with an admin token): a chunk
// replaced on its node before upload, and re-signed there, verifies in
// the store but not against the anchor taken when it was sealed. Anchors
// newer than the due digests may belong to chunks still on their way.
func checkAnchors(ctx context.Context, f auditVerifyFlags, store blob.Store, report *archive.Report) error {
	api := firstNonEmpty(f.api, os.Getenv("PHIGATE_API"))
	if api == "" || (f.tokenFile == "" && os.Getenv("PHIGATE_TOKEN") == "") {
		return nil
	}
	c, err := (&adminFlags{api: api, tokenFile: f.tokenFile, caFile: f.ca}).client()
	if err != nil {
		return err
	}
	path := "/admin/v1/anchors"
	if f.session != "" {
		path += "?session=" + url.QueryEscape(f.session)
	}
	var all []archive.Anchor
	if err := c.do(ctx, http.MethodGet, path, nil, nil, &all); err != nil {
		return fmt.Errorf("anchors from %s: %w", api, err)
	}
	var due, recent []archive.Anchor
	for _, a := range all {
		switch {
		case f.session != "" && a.Session != f.session:
		case f.session == "" && (a.SealedAt.Before(report.From) || !a.SealedAt.Before(report.To)):
		case a.SealedAt.Before(report.DigestsDue):
			due = append(due, a)
		default:
			recent = append(recent, a)
		}
	}
	for _, set := range []struct {
		list      []archive.Anchor
		missingOK bool
	}{{due, false}, {recent, true}} {
		fs, err := archive.CheckAnchors(ctx, store, set.list, set.missingOK)
		if err != nil {
			return fmt.Errorf("anchors: %w", err)
		}
		report.Findings = append(report.Findings, fs...)
	}
	report.Anchors = len(due) + len(recent)
	return nil
}
