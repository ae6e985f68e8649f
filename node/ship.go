package node

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/phigate/phigate/cluster"
	"github.com/phigate/phigate/session/identity"
	"github.com/phigate/phigate/storage/archive"
	"github.com/phigate/phigate/storage/blob"
	"github.com/phigate/phigate/storage/chunk"
	"github.com/phigate/phigate/storage/ship"
)

// Where, under the data directory, the shipper keeps its ledger and
// segments, and the local store is by default.
const (
	ShipSubdir  = "ship"
	StoreSubdir = "store"
)

// Defaults of the store section.
const (
	defaultRetention    = "6y"
	defaultBacklogBytes = 10 << 30
	// storeCheckTimeout bounds the bucket check at start.
	storeCheckTimeout = 15 * time.Second
	// shipFlushTimeout bounds the last tick at Close (closing chunks of
	// the sessions that just ended); uploads resume at the next start.
	shipFlushTimeout = 5 * time.Second
)

// parseRetention reads "6y", "400d" or a Go duration.
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"y": 365*24*time.Hour + 6*time.Hour, "d": 24 * time.Hour} {
		if num, ok := strings.CutSuffix(s, suffix); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n <= 0 || n > 100 && suffix == "y" || n > 36500 {
				return 0, fmt.Errorf("retention %q: want a positive number of years (y) or days (d), or a duration", s)
			}
			return time.Duration(n) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("retention %q: want a positive number of years (y) or days (d), or a duration", s)
	}
	return d, nil
}

// StoreLocation is where cfg's node keeps recordings for the long term.
func StoreLocation(cfg *Config) (blob.Location, error) {
	if cfg.Store.Location == "" {
		return blob.Location{Scheme: "file", Dir: filepath.Join(DataDir(cfg), StoreSubdir)}, nil
	}
	return blob.ParseLocation(cfg.Store.Location)
}

// OpenStore opens the store cfg names (credentials from its file or the
// environment). It does not check an S3 bucket's lock configuration: see
// CheckStore.
func OpenStore(cfg *Config) (blob.Store, blob.Location, error) {
	loc, err := StoreLocation(cfg)
	if err != nil {
		return nil, loc, fmt.Errorf("node: store: %w", err)
	}
	st, err := blob.Open(loc, func() (blob.Credentials, error) {
		if f := cfg.Store.CredentialsFile; f != "" {
			return blob.CredentialsFromFile(f)
		}
		return blob.CredentialsFromEnv()
	})
	if err != nil {
		return nil, loc, fmt.Errorf("node: store: %w", err)
	}
	return st, loc, nil
}

// checkStore refuses a bucket without versioning and object lock unless
// the configuration allows it. A bucket that cannot be reached now is
// checked before the first upload instead (lockChecked).
func checkStore(ctx context.Context, cfg *Config, st blob.Store, log interface{ Warn(string, ...any) }) (blob.Store, error) {
	s3, ok := st.(*blob.S3)
	if !ok || cfg.Store.AllowUnlocked {
		if ok {
			log.Warn("store.allow_unlocked: recordings may go to a bucket without object lock; anyone with its credentials could delete them")
		}
		return st, nil
	}
	cctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	defer cancel()
	err := s3.CheckBucket(cctx)
	switch {
	case err == nil:
		return st, nil
	case errors.Is(err, blob.ErrBucketNotLocked):
		return nil, fmt.Errorf("node: store: %w (set store.allow_unlocked to ship anyway)", err)
	case blob.Retryable(err):
		log.Warn("cannot reach the store to check its bucket; recordings wait in the spool until it is checked", "err", err)
		return &lockChecked{S3: s3}, nil
	}
	return nil, fmt.Errorf("node: store: %w", err)
}

// lockChecked checks the bucket's lock configuration before its first Put.
type lockChecked struct {
	*blob.S3
	mu sync.Mutex
	ok bool
}

func (l *lockChecked) Put(ctx context.Context, key string, data []byte, opts blob.PutOptions) error {
	l.mu.Lock()
	if !l.ok {
		if err := l.S3.CheckBucket(ctx); err != nil {
			l.mu.Unlock()
			return err
		}
		l.ok = true
	}
	l.mu.Unlock()
	return l.S3.Put(ctx, key, data, opts)
}

// signingKeyFile holds the node's Ed25519 key (PKCS #8 PEM), and
// signingPubFile its published form (archive.PublishedKey, JSON).
const (
	signingKeyFile = "signing.key"
	signingPubFile = "signing.json"
)

// SigningKey loads the node's recording signing key from the data
// directory, making one on first use, with its published form.
func SigningKey(dataDir, nodeID string, now time.Time) (chunk.Signer, []byte, error) {
	dir := filepath.Join(dataDir, "keys")
	keyPath, pubPath := filepath.Join(dir, signingKeyFile), filepath.Join(dir, signingPubFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return makeSigningKey(dir, nodeID, now.UTC().Truncate(time.Hour))
	}
	if err != nil {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key %s: not PEM", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key %s: %w", keyPath, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key %s: not Ed25519", keyPath)
	}
	signer := chunk.NewSigner(priv)
	pub, err := os.ReadFile(pubPath)
	if err != nil {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key: %w", err)
	}
	var pk archive.PublishedKey
	if err := json.Unmarshal(pub, &pk); err != nil || pk.ID != signer.ID {
		return chunk.Signer{}, nil, fmt.Errorf("node: %s does not describe the signing key", pubPath)
	}
	return signer, pub, nil
}

// makeSigningKey makes and writes a new signing key, published as valid
// from notBefore.
func makeSigningKey(dir, nodeID string, notBefore time.Time) (chunk.Signer, []byte, error) {
	pubKey, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return chunk.Signer{}, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return chunk.Signer{}, nil, err
	}
	signer := chunk.NewSigner(priv)
	pub, err := json.Marshal(archive.PublishedKey{ID: signer.ID, Node: nodeID, Public: pubKey, NotBefore: notBefore.UTC()})
	if err != nil {
		return chunk.Signer{}, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return chunk.Signer{}, nil, fmt.Errorf("node: signing key: %w", err)
	}
	// The public form first: a key file without it is never left behind.
	if err := writeFileAtomic(filepath.Join(dir, signingPubFile), pub, 0o644); err != nil {
		return chunk.Signer{}, nil, err
	}
	if err := writeFileAtomic(filepath.Join(dir, signingKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return chunk.Signer{}, nil, err
	}
	return signer, pub, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("node: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// retention returns, for a resource, the retention its objects get.
func (n *Node) retention(resource string) blob.PutOptions {
	spec := n.cfg.Store.Retention
	n.reloadMu.Lock()
	if n.policy != nil {
		for _, rc := range n.policy.Resources {
			if rc.Name == resource && rc.Retention != "" {
				spec = rc.Retention
			}
		}
	}
	n.reloadMu.Unlock()
	if spec == "" {
		spec = defaultRetention
	}
	d, err := parseRetention(spec)
	if err != nil {
		d, _ = parseRetention(defaultRetention) // validated at load; never here
	}
	return blob.PutOptions{RetainUntil: time.Now().Add(d).UTC().Truncate(time.Second), Mode: blob.Mode(strings.ToUpper(n.cfg.Store.RetentionMode))}
}

// checkStoreConfig validates the store section without opening anything.
func checkStoreConfig(c StoreConfig) error {
	if c.Location != "" {
		if _, err := blob.ParseLocation(c.Location); err != nil {
			return fmt.Errorf("node: store.location: %w", err)
		}
	}
	if c.Retention != "" {
		if _, err := parseRetention(c.Retention); err != nil {
			return fmt.Errorf("node: store.retention: %w", err)
		}
	}
	switch strings.ToUpper(c.RetentionMode) {
	case "", string(blob.Governance), string(blob.Compliance):
	default:
		return fmt.Errorf("node: store.retention_mode %q: want GOVERNANCE or COMPLIANCE", c.RetentionMode)
	}
	if c.ChunkBytes < 0 || c.ChunkBytes > 64<<20 {
		return fmt.Errorf("node: store.chunk_bytes %d: want 0 (1 MiB) up to 64 MiB", c.ChunkBytes)
	}
	if c.ChunkInterval < 0 || c.ChunkInterval > time.Hour {
		return fmt.Errorf("node: store.chunk_interval %v: want 0 (1s) up to 1h", c.ChunkInterval)
	}
	return nil
}

// startShipper opens the store, publishes the node's signing key in the
// cluster state, and starts sealing and shipping the spool's recordings.
func (n *Node) startShipper(ctx context.Context) error {
	if shippingOff() {
		n.log.Warn("benchmark build: recordings are NOT shipped (PHIGATE_BENCH_SHIPPING=off)")
		return nil
	}
	st, loc, err := OpenStore(n.cfg)
	if err != nil {
		return err
	}
	if st, err = checkStore(ctx, n.cfg, st, n.log); err != nil {
		return err
	}
	signer, pub, err := SigningKey(n.dataDir, n.id, time.Now())
	if err != nil {
		return err
	}
	records := cluster.NewRecords(n.member.Client())
	if err := records.PublishKey(ctx, signer.ID, pub); err != nil {
		return fmt.Errorf("node: publish signing key: %w", err)
	}
	// A rotation that stopped half way left an older key of this node
	// without an end: it ends now.
	if err := retireKeys(ctx, records, n.id, signer.ID, time.Now()); err != nil {
		return err
	}
	backlog := n.cfg.Store.BacklogBytes
	switch {
	case backlog == 0:
		backlog = defaultBacklogBytes
	case backlog < 0:
		backlog = 0
	}
	sh, err := ship.New(ship.Config{
		Node: n.id, Dir: filepath.Join(n.dataDir, ShipSubdir), Spool: n.sp, Store: st, Signer: signer,
		Auditor:      func() *ecdh.PublicKey { return n.state.Load().Auditor },
		Anchor:       anchorsTo(records),
		Retention:    n.retention,
		PublishedKey: pub,
		MaxBytes:     n.cfg.Store.ChunkBytes, MaxDuration: n.cfg.Store.ChunkInterval,
		Cap: backlog, Logger: n.log,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.records, n.shipper = records, sh
	shipCtx, stop := context.WithCancel(context.Background())
	n.stopShip, n.shipDone = stop, make(chan error, 1)
	go func() {
		err := sh.Run(shipCtx)
		if err != nil && shipCtx.Err() == nil {
			n.log.Error("the recording shipper stopped; recordings stay in the spool", "err", err)
			n.fail(fmt.Errorf("node: shipper: %w", err))
		}
		n.shipDone <- err
	}()
	n.log.Info("shipping recordings", "store", loc.String(), "signing_key", signer.ID)
	return nil
}

// stopShipper seals what the sessions that just ended left (one last
// tick, bounded) and stops the shipper; uploads resume at the next start.
func (n *Node) stopShipper() error {
	if n.shipper == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- n.shipper.Tick() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(shipFlushTimeout):
	}
	n.stopShip()
	if rerr := <-n.shipDone; err == nil {
		err = rerr
	}
	return err
}

// anchorsTo stores anchors in the cluster state.
func anchorsTo(r *cluster.Records) func(context.Context, []ship.Anchor) error {
	return func(ctx context.Context, as []ship.Anchor) error {
		out := make([]cluster.Anchor, 0, len(as))
		for _, a := range as {
			b, err := json.Marshal(a)
			if err != nil {
				return err
			}
			out = append(out, cluster.Anchor{Session: a.Session, Value: b})
		}
		return r.PutAnchors(ctx, out)
	}
}

// PublishedKeys returns every node signing key the cluster published.
func (n *Node) PublishedKeys(ctx context.Context) ([]archive.PublishedKey, error) {
	if n.records == nil {
		return nil, errors.New("node: not started")
	}
	m, err := n.records.Keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]archive.PublishedKey, 0, len(m))
	for id, v := range m {
		var k archive.PublishedKey
		if err := json.Unmarshal(v, &k); err != nil || k.ID != id {
			return nil, fmt.Errorf("node: published key %s does not decode", id)
		}
		out = append(out, k)
	}
	return out, nil
}

// ShipStats is the shipper's counters (zero before Start).
func (n *Node) ShipStats() ship.Stats {
	if n.shipper == nil {
		return ship.Stats{}
	}
	return n.shipper.Stats()
}

// keysHandler serves the published signing keys (public, no credentials
// needed): what `phigate audit verify --api` checks signatures with.
func (n *Node) keysHandler(w http.ResponseWriter, r *http.Request) {
	keys, err := n.PublishedKeys(r.Context())
	if err != nil {
		n.log.Warn("cannot list signing keys", "err", err)
		http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
		return
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ID < keys[j].ID })
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(keys)
}

// Anchors returns the anchors in the cluster state of the sessions whose
// id starts with prefix ("" for all).
func (n *Node) Anchors(ctx context.Context, prefix string) ([]archive.Anchor, error) {
	if n.records == nil {
		return nil, errors.New("node: not started")
	}
	m, err := n.records.Anchors(ctx, prefix)
	if err != nil {
		return nil, err
	}
	out := make([]archive.Anchor, 0, len(m))
	for id, v := range m {
		var a archive.Anchor
		if err := json.Unmarshal(v, &a); err != nil || a.Session != id {
			return nil, fmt.Errorf("node: anchor of %s does not decode", id)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Session < out[j].Session })
	return out, nil
}

// listAnchors serves GET /admin/v1/anchors[?session=PREFIX]: what
// `phigate audit verify --api` compares the store with.
func (n *Node) listAnchors(r *http.Request, _ identity.Identity) (any, error) {
	return n.Anchors(r.Context(), r.URL.Query().Get("session"))
}

// retireKeys ends the validity, at, of every published key of node but
// keep (all of them when keep is empty): the node no longer holds them.
func retireKeys(ctx context.Context, r *cluster.Records, node, keep string, at time.Time) error {
	m, err := r.Keys(ctx)
	if err != nil {
		return err
	}
	for id, v := range m {
		var k archive.PublishedKey
		if err := json.Unmarshal(v, &k); err != nil || k.Node != node || id == keep || !k.NotAfter.IsZero() {
			continue
		}
		k.NotAfter = at.UTC()
		b, err := json.Marshal(k)
		if err != nil {
			return err
		}
		if err := r.ReplaceKey(ctx, id, v, b); err != nil {
			return fmt.Errorf("node: retire signing key %s: %w", id, err)
		}
	}
	return nil
}

// RotateSigningKey gives the node a new recording signing key: the new key
// is written and published (valid from the start of the current hour, so
// that this hour's digest, signed when it has ended, verifies; the
// shipper writes the digests of the hours before with the old key first), the shipper signs
// with it from its next tick, and then the old key is retired (valid until
// now): recordings signed before verify with it, anything it signs later
// does not. The old private key is gone from the node.
func (n *Node) RotateSigningKey(ctx context.Context) (archive.PublishedKey, error) {
	if n.shipper == nil || n.records == nil {
		return archive.PublishedKey{}, errors.New("node: not shipping recordings")
	}
	n.rotateMu.Lock()
	defer n.rotateMu.Unlock()
	dir := filepath.Join(n.dataDir, "keys")
	signer, pub, err := makeSigningKey(dir, n.id, time.Now().UTC().Truncate(time.Hour))
	if err != nil {
		return archive.PublishedKey{}, err
	}
	if err := n.records.PublishKey(ctx, signer.ID, pub); err != nil {
		return archive.PublishedKey{}, fmt.Errorf("node: publish signing key: %w", err)
	}
	if err := n.shipper.SetSigner(signer); err != nil {
		return archive.PublishedKey{}, err
	}
	if err := retireKeys(ctx, n.records, n.id, signer.ID, time.Now()); err != nil {
		return archive.PublishedKey{}, err
	}
	var k archive.PublishedKey
	if err := json.Unmarshal(pub, &k); err != nil {
		return archive.PublishedKey{}, err
	}
	n.log.Info("recording signing key rotated", "signing_key", k.ID)
	return k, nil
}

func (n *Node) rotateKey(r *http.Request, who identity.Identity) (any, error) {
	k, err := n.RotateSigningKey(r.Context())
	if err != nil {
		return nil, err
	}
	n.log.Warn("signing key rotated by an admin", "identity", who.Name, "signing_key", k.ID)
	return k, nil
}

// accepting is the snapshots' Accepting: new sessions are refused while the
// recordings waiting for the store are at store.backlog_bytes.
func (n *Node) accepting() error {
	if sh := n.shipper; sh != nil {
		if err := sh.Admit(); err != nil {
			return errors.New("its recordings waiting for the store reached store.backlog_bytes")
		}
	}
	return nil
}
