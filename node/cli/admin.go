package cli

import (
	"bytes"
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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/phigate/phigate/node"
)

// adminClient calls a node's admin endpoints (node/admin.go) with an
// admin identity's token.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// adminFlags are the flags every admin verb takes; each has an
// environment variable, so that scripts set them once.
type adminFlags struct {
	api, tokenFile, caFile string
}

func (f *adminFlags) add(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.api, "api", "", "the node's API, https://HOST:PORT (env PHIGATE_API)")
	cmd.PersistentFlags().StringVar(&f.tokenFile, "token-file", "", "a file holding an admin identity's token (env PHIGATE_TOKEN holds the token itself)")
	cmd.PersistentFlags().StringVar(&f.caFile, "cacert", "", "PEM file of the CA that signed the API's certificate (env PHIGATE_CACERT); default: the system's roots")
}

func (f *adminFlags) client() (*adminClient, error) {
	api := firstNonEmpty(f.api, os.Getenv("PHIGATE_API"))
	if api == "" {
		return nil, errors.New("--api (or PHIGATE_API) is required: the node's API, https://HOST:PORT")
	}
	u, err := url.Parse(api)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("--api %q: want https://HOST:PORT", api)
	}
	token := os.Getenv("PHIGATE_TOKEN")
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("an admin token is required: --token-file FILE or PHIGATE_TOKEN")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := firstNonEmpty(f.caFile, os.Getenv("PHIGATE_CACERT")); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s holds no PEM certificate", ca)
		}
	}
	return &adminClient{base: strings.TrimRight(api, "/"), token: token,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// do sends a request and decodes a JSON answer into out (nil: dropped).
func (c *adminClient) do(ctx context.Context, method, path string, header http.Header, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("%s", resp.Status)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// download saves a streamed answer to path (written to path.tmp first,
// synced, then renamed, so that a broken stream leaves no file).
func (c *adminClient) download(ctx context.Context, path, dst string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	f, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(dst+".tmp", dst)
	}
	if err != nil {
		os.Remove(dst + ".tmp")
		return 0, fmt.Errorf("snapshot incomplete: %w", err)
	}
	return n, nil
}

func newPolicyCommand() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "policy", Short: "Read and change the cluster's policy (admins only)",
		Long: `Read and change the cluster's shared policy: identities, resources, grants,
masking profiles, the auditors' public key and the admins. Each change is a
new numbered revision, kept with who applied it and when; every node
enforces a new revision within a second.`}
	af.add(cmd)

	var file string
	var base uint64
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate a policy file and apply it as the next revision",
		Long: `Validate a policy file and apply it as the cluster's next revision. Files it
names (password_file, password_env, ca_file, auditors.public_key_file) are read
here, where the command runs, and sent to the node over TLS; the node seals
passwords under the cluster key before storing them. A file that does not
validate changes nothing: every error is printed. --base N applies only if
revision N is still the current one (a change made meanwhile is not
overwritten).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f FILE is required")
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			b, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			p, err := node.ParsePolicy(b)
			if err != nil {
				return err
			}
			if err := p.Resolve(); err != nil {
				return err
			}
			doc, err := p.Marshal()
			if err != nil {
				return err
			}
			h := http.Header{"Content-Type": {"application/yaml"}}
			if base != 0 {
				h.Set("Phigate-Base-Revision", strconv.FormatUint(base, 10))
			}
			var out node.PolicyAnswer
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/policy", h, doc, &out); err != nil {
				return fmt.Errorf("policy refused: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "applied revision %d (sha256 %s) by %s; enforced on this node: %v\n", out.Revision, out.SHA256, out.AppliedBy, out.Enforced)
			return err
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "the policy file (YAML)")
	apply.Flags().Uint64Var(&base, "base", 0, "apply only if this revision is still the current one")

	var rev uint64
	get := &cobra.Command{
		Use:   "get [--revision N]",
		Short: "Print a policy revision as stored (passwords sealed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			out, err := getRevision(cmd.Context(), c, rev)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "# revision %d, applied by %s at %s, sha256 %s\n%s", out.Revision, out.AppliedBy, out.AppliedAt.Format(time.RFC3339), out.SHA256, out.Document)
			return err
		},
	}
	get.Flags().Uint64Var(&rev, "revision", 0, "the revision (default: the current one)")

	history := &cobra.Command{
		Use:   "history",
		Short: "List every policy revision: who applied it, when, its digest",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out []node.PolicyAnswer
			if err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/policy/history", nil, nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tAPPLIED AT\tAPPLIED BY\tSHA256")
			for _, r := range out {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", r.Revision, r.AppliedAt.Format(time.RFC3339), r.AppliedBy, r.SHA256[:16])
			}
			return tw.Flush()
		},
	}

	diff := &cobra.Command{
		Use:   "diff A B",
		Short: "Show what changed from revision A to revision B",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var docs [2]node.PolicyAnswer
			for i, a := range args {
				n, err := strconv.ParseUint(a, 10, 64)
				if err != nil || n == 0 {
					return fmt.Errorf("%q is not a revision number", a)
				}
				if docs[i], err = getRevision(cmd.Context(), c, n); err != nil {
					return err
				}
			}
			_, err = io.WriteString(cmd.OutOrStdout(), unifiedDiff(
				fmt.Sprintf("revision %d (%s, %s)", docs[0].Revision, docs[0].AppliedBy, docs[0].AppliedAt.Format(time.RFC3339)),
				fmt.Sprintf("revision %d (%s, %s)", docs[1].Revision, docs[1].AppliedBy, docs[1].AppliedAt.Format(time.RFC3339)),
				sealedValuesOut(docs[0].Document), sealedValuesOut(docs[1].Document)))
			return err
		},
	}
	cmd.AddCommand(apply, get, history, diff)
	return cmd
}

func getRevision(ctx context.Context, c *adminClient, rev uint64) (node.PolicyAnswer, error) {
	path := "/admin/v1/policy"
	if rev != 0 {
		path += "?revision=" + strconv.FormatUint(rev, 10)
	}
	var out node.PolicyAnswer
	err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// sealedValuesOut drops the sealed: lines of a stored document: each
// sealing has a fresh nonce, so they differ every revision; the
// fingerprint beside them says whether the password changed.
func sealedValuesOut(doc string) string {
	var b strings.Builder
	for line := range strings.Lines(doc) {
		if strings.HasPrefix(strings.TrimSpace(line), "sealed:") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

func newClusterCommand() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{Use: "cluster", Short: "See and change the cluster's members (admins only)"}
	af.add(cmd)
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Members, their roles, the leader, quorum and the policy revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var st node.ClusterStatus
			if err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/cluster", nil, nil, &st); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "node %s; leader %s; quorum %v; policy revision %d\n", st.Self, firstNonEmpty(st.Leader, "(none)"), st.Quorum, st.PolicyRevision)
			if st.Unavailable != "" {
				fmt.Fprintf(w, "UNAVAILABLE: %s\n", st.Unavailable)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tLEADER\tGOSSIP\tPOSTGRES\tSESSIONS\tVERSION\tPEER")
			for _, m := range st.Members {
				pg, v, sessions := "", "", ""
				if m.Meta != nil {
					pg, v, sessions = m.Meta.Postgres, m.Meta.Version, strconv.Itoa(m.Meta.Sessions)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Leader, firstNonEmpty(m.Gossip, "-"), pg, sessions, v, m.PeerURL)
			}
			return tw.Flush()
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var ttl time.Duration
	token := &cobra.Command{
		Use:   "join-token [--ttl 30m]",
		Short: "Print a short-lived token a new node joins with (phigate node --join ADDR --join-token T)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var out node.JoinTokenAnswer
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/cluster/join-token?ttl="+url.QueryEscape(ttl.String()), nil, nil, &out); err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), out.Token)
			return err
		},
	}
	token.Flags().DurationVar(&ttl, "ttl", 30*time.Minute, "how long the token is valid (1m to 24h)")

	remove := &cobra.Command{
		Use:   "remove NODE",
		Short: "Remove a dead node from the cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/cluster/remove?node="+url.QueryEscape(args[0]), nil, nil, nil); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "removed %s\n", args[0])
			return err
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Give the node --api names a new recording signing key (the old one stays published, retired)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			var k struct {
				ID        string    `json:"id"`
				Node      string    `json:"node"`
				NotBefore time.Time `json:"not_before"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/keys/rotate", nil, nil, &k); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s signs recordings with key %s (valid from %s); its previous key is retired\n", k.Node, k.ID, k.NotBefore.Format(time.RFC3339))
			return err
		},
	}
	leave := &cobra.Command{
		Use:   "leave",
		Short: "Make the node --api names drain, leave the cluster and stop",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			c.http.Timeout = 2 * time.Minute
			var out map[string]string
			if err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/cluster/leave", nil, nil, &out); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s left the cluster\n", out["left"])
			return err
		},
	}
	var filter struct{ node, identity, resource string }
	sessions := &cobra.Command{
		Use:   "sessions",
		Short: "List sessions across the cluster: node, identity, resource, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"node": filter.node, "identity": filter.identity, "resource": filter.resource} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var out []struct {
				ID, Node, Identity, Resource string
				ClientAddr                   string    `json:"client_addr"`
				Start                        time.Time `json:"start"`
				End                          time.Time `json:"end"`
				EndReason                    string    `json:"end_reason"`
				State                        string    `json:"state"`
			}
			if err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/sessions?"+q.Encode(), nil, nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tSTATE\tNODE\tIDENTITY\tRESOURCE\tCLIENT\tSTART\tEND")
			for _, s := range out {
				end := ""
				if !s.End.IsZero() {
					end = s.End.Format(time.RFC3339) + " (" + s.EndReason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.State, s.Node, s.Identity, s.Resource, s.ClientAddr, s.Start.Format(time.RFC3339), end)
			}
			return tw.Flush()
		},
	}
	sessions.Flags().StringVar(&filter.node, "node", "", "only this node's")
	sessions.Flags().StringVar(&filter.identity, "identity", "", "only this identity's")
	sessions.Flags().StringVar(&filter.resource, "resource", "", "only on this resource")
	var out string
	snapshot := &cobra.Command{
		Use:   "snapshot --out FILE",
		Short: "Save a snapshot of the cluster state (policy revisions, node numbers, session index) for backup",
		Long: `Save a snapshot of the cluster state, in etcd's snapshot format: policy
revisions, node numbers and the session index. Restore it with etcdutl
(docs/operations.md says how). The nodes' PKI and secrets are not in it:
back up a node's data_dir/cluster/pki with it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required")
			}
			c, err := af.client()
			if err != nil {
				return err
			}
			c.http.Timeout = 10 * time.Minute
			n, err := c.download(cmd.Context(), "/admin/v1/cluster/snapshot", out)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved %s (%d bytes)\n", out, n)
			return err
		},
	}
	snapshot.Flags().StringVarP(&out, "out", "o", "", "the file to write")
	cmd.AddCommand(status, token, remove, leave, sessions, snapshot, rotate)
	return cmd
}
