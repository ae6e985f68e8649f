package node_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/phigate/phigate/node"
	"github.com/phigate/phigate/session/identity"
)

// TestAdminAPIAttacks: what a caller of the admin API could try against a
// node, and its effect on the policy in force (the revision, and logins
// with the tokens at stake). Every attempt is refused and changes nothing.
func TestAdminAPIAttacks(t *testing.T) {
	ctx := context.Background()
	f := newClusterFixture(t, "node_attacks")
	n, err := startTestNode(t, f.config(t, "solo"), "")
	if err != nil {
		t.Fatal(err)
	}
	api := "https://" + n.APIAddr().String()
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	post := func(token string, body []byte, header ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, api+"/admin/v1/policy", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	stored := func() string {
		cur, err := n.Policy(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		return string(cur.Document)
	}
	// resolved is a policy as `phigate policy apply` sends it: files read,
	// the auditors' key as the cluster has it.
	cur, _ := node.ParsePolicy([]byte(stored()))
	resolved := func(yaml string) []byte {
		p, err := node.ParsePolicy([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Resolve(); err != nil {
			t.Fatal(err)
		}
		p.Auditors = cur.Auditors
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := resolved(f.policy("read", "a", "c"))
	before := n.PolicyRevision()

	for name, tc := range map[string]struct {
		token  string
		body   []byte
		header []string
		want   int
		says   string
	}{
		"no token":         {"", good, nil, http.StatusUnauthorized, ""},
		"an unknown token": {"phg_nobody", good, nil, http.StatusUnauthorized, ""},
		"an agent's token": {f.tokens["a"], good, nil, http.StatusForbidden, ""},
		"the token's hash": {identity.HashToken(f.tokens["root"]), good, nil, http.StatusUnauthorized, ""},
		"a file on the node": {f.tokens["root"], []byte(strings.Replace(string(good), "resources:", "resources:\n  - {name: leak, address: '127.0.0.1:1', database: d, user: u, password_file: /etc/hostname, tls: disable}", 1)), nil,
			http.StatusBadRequest, "resolve it where the file is"},
		"a variable on the node": {f.tokens["root"], []byte(strings.Replace(string(good), "resources:", "resources:\n  - {name: leak, address: '127.0.0.1:1', database: d, user: u, password_env: HOME, tls: disable}", 1)), nil,
			http.StatusBadRequest, "resolve it where the file is"},
		"a sealed password moved to another resource": {f.tokens["root"], []byte(movedPassword(t, stored())), nil, http.StatusBadRequest, "does not open"},
		"a password sealed by another cluster": {f.tokens["root"], []byte(strings.Replace(string(good), "value: cluster-pw", "sealed: "+sealedB64(t), 1)), nil,
			http.StatusBadRequest, "does not open"},
		"admins removed (lock-out)":    {f.tokens["root"], []byte(strings.Replace(string(good), "- admins\n", "- nobody\n", 1)), nil, http.StatusBadRequest, "lock"},
		"own token removed (lock-out)": {f.tokens["root"], resolved(strings.Replace(f.policy("read", "a"), identity.HashToken(f.tokens["root"]), identity.HashToken("phg_someone_else"), 1)), nil, http.StatusBadRequest, "lock"},
		"unknown field":                {f.tokens["root"], append(append([]byte{}, good...), "superuser: true\n"...), nil, http.StatusBadRequest, "superuser"},
		"a stale base":                 {f.tokens["root"], good, []string{"Phigate-Base-Revision", "1000"}, http.StatusConflict, ""},
		"not YAML":                     {f.tokens["root"], []byte("\x00\xff{{{"), nil, http.StatusBadRequest, ""},
		"9 MiB":                        {f.tokens["root"], bytes.Repeat([]byte("#"), 9<<20), nil, http.StatusBadRequest, ""},
	} {
		t.Run(name, func(t *testing.T) {
			code, body := post(tc.token, tc.body, tc.header...)
			if code != tc.want || !strings.Contains(body, tc.says) {
				t.Fatalf("%d %s, want %d saying %q", code, body, tc.want, tc.says)
			}
			if strings.Contains(body, "cluster-pw") {
				t.Fatalf("the answer carries the password: %s", body)
			}
			if n.PolicyRevision() != before {
				t.Fatalf("the policy changed: revision %d, was %d", n.PolicyRevision(), before)
			}
		})
	}
	// b's token still logs in: nothing above removed it.
	conn, err := pgx.Connect(ctx, n.dsn("b", f.tokens["b"]))
	if err != nil {
		t.Fatalf("b after the refused applies: %v", err)
	}
	conn.Close(ctx)

	// The good one applies; the stored form has the password sealed only.
	if code, body := post(f.tokens["root"], good); code != http.StatusOK {
		t.Fatalf("apply: %d %s", code, body)
	}
	if doc := stored(); strings.Contains(doc, "cluster-pw") || !strings.Contains(doc, "sealed:") {
		t.Fatalf("stored policy:\n%s", doc)
	}
	if _, err := pgx.Connect(ctx, n.dsn("b", f.tokens["b"])); !hasCode(err, "28P01") {
		t.Fatalf("b after the good apply: %v, want 28P01", err)
	}
}

// movedPassword is a stored policy with the clinic resource's sealed
// password given to a second resource instead (and clinic's password
// replaced by it too): sealed values are bound to their place.
func movedPassword(t *testing.T, doc string) string {
	t.Helper()
	p, err := node.ParsePolicy([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	moved := p.Resources[0]
	moved.Name = "other"
	p.Resources = append(p.Resources, moved)
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sealedB64 is a password sealed under a key that is not the cluster's.
func sealedB64(t *testing.T) string {
	t.Helper()
	p := &node.Policy{Resources: []node.ResourceConfig{{Name: "clinic", Password: &node.SealedSecret{Value: "cluster-pw"}}}}
	s, err := node.NewAESSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	if err := node.SealPolicyForTest(p, s); err != nil {
		t.Fatal(err)
	}
	return p.Resources[0].Password.Sealed
}
