package node

import (
	"github.com/phigate/phigate/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"sync/atomic"

	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/session/pgwire"
	"github.com/phigate/phigate/session/policy"
	"github.com/phigate/phigate/storage/spool"
)

// metrics holds the node's Prometheus collectors, in a registry of the
// node's own (never the global one: two nodes in one process, as in
// tests, must not share counters). It is the pgwire.Observer and the
// spool's OnCommit. Labels take values from fixed sets only; the children
// the data path uses are made up front, so that counting a command costs a
// map read and an atomic add, without allocating.
type metrics struct {
	reg *prometheus.Registry

	active   prometheus.Gauge
	live     atomic.Int64                           // active, readable (gossip carries it as load)
	ended    map[string]prometheus.Counter          // by pgwire End class, and "refused"
	commands map[bool]map[string]prometheus.Counter // by allowed, then class
	cmdVec   *prometheus.CounterVec
	masked   prometheus.Counter
	reloads  map[bool]prometheus.Counter // by ok
	fsync    prometheus.Histogram
	frames   prometheus.Histogram

	policyRefused prometheus.Counter
}

var _ pgwire.Observer = (*metrics)(nil)

// endRefused is the sessions_ended reason of a connection refused at login.
const endRefused = "refused"

func newMetrics(state *session.State, n *Node) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: "phigate_sessions_active", Help: "Sessions logged in and not yet ended."})
	ended := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "phigate_sessions_ended_total",
		Help: "Sessions ended, by reason class (terminate, client_closed, revoked, shutdown, error, other), and connections refused at login (refused)."}, []string{"reason"})
	m.ended = map[string]prometheus.Counter{}
	for _, r := range []string{pgwire.EndTerminate, pgwire.EndClientClosed, pgwire.EndRevoked, pgwire.EndShutdown, pgwire.EndError, pgwire.EndOther, endRefused} {
		m.ended[r] = ended.WithLabelValues(r)
	}
	m.cmdVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "phigate_commands_total",
		Help: "Commands recorded, by statement class (mixed: several classes; none: not classified) and decision (allow, deny). An allowed prepare is counted at its executions."}, []string{"class", "decision"})
	m.commands = map[bool]map[string]prometheus.Counter{true: {}, false: {}}
	classes := []string{string(policy.Read), string(policy.Write), string(policy.DDL), string(policy.Admin), string(policy.Export),
		string(policy.Import), string(policy.Tx), string(policy.Session), pgwire.ClassMixed, pgwire.ClassNone}
	for _, c := range classes {
		m.commands[true][c] = m.cmdVec.WithLabelValues(c, "allow")
		m.commands[false][c] = m.cmdVec.WithLabelValues(c, "deny")
	}
	m.masked = prometheus.NewCounter(prometheus.CounterOpts{Name: "phigate_masked_values_total", Help: "Non-NULL values masked in results (replaced or made NULL)."})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "phigate_state_reloads_total", Help: "State reloads, by result (ok, refused)."}, []string{"result"})
	m.reloads = map[bool]prometheus.Counter{true: reloads.WithLabelValues("ok"), false: reloads.WithLabelValues("refused")}
	revision := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "phigate_state_revision", Help: "Revision of the state snapshot sessions are decided with."},
		func() float64 { return float64(state.Load().Revision) })
	m.fsync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "phigate_spool_fsync_seconds", Help: "Duration of the recording journal's fdatasync, one per group commit.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)})
	m.frames = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "phigate_spool_commit_frames", Help: "Recording frames made durable per group commit.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	policyRev := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "phigate_policy_revision", Help: "The cluster policy revision this node enforces."},
		func() float64 { return float64(n.PolicyRevision()) })
	m.policyRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "phigate_policy_revisions_refused_total",
		Help: "Cluster policy revisions this node could not enforce (it kept the one before; its log says why)."})
	unavailable := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "phigate_node_unavailable",
		Help: "1 while the node refuses every login and command because it lost the cluster's quorum for longer than its lease."},
		func() float64 {
			if state.Load().Unavailable != "" {
				return 1
			}
			return 0
		})
	quorum := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "phigate_cluster_quorum",
		Help: "1 when the node's last check (every second) reached the cluster's quorum."},
		func() float64 {
			if n != nil && n.quorumOK.Load() {
				return 1
			}
			return 0
		})
	indexDropped := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "phigate_session_index_dropped_total",
		Help: "Session starts and ends not written to the cluster's session index because its queue was full (the data path never waits on it)."},
		func() float64 {
			if n == nil || n.index == nil {
				return 0
			}
			return float64(n.index.Dropped())
		})
	m.reg.MustRegister(m.active, ended, m.cmdVec, m.masked, reloads, revision, m.fsync, m.frames, policyRev, m.policyRefused, unavailable, quorum, indexDropped,
		gossipCollector{n: n}, shipCollector{n: n})
	return m
}

func (m *metrics) SessionStarted() {
	m.active.Inc()
	m.live.Add(1)
}

func (m *metrics) SessionEnded(class string) {
	m.active.Dec()
	m.live.Add(-1)
	if c, ok := m.ended[class]; ok {
		c.Inc()
		return
	}
	m.ended[pgwire.EndOther].Inc()
}

func (m *metrics) SessionRefused() { m.ended[endRefused].Inc() }

func (m *metrics) Command(class string, allowed bool) {
	if c, ok := m.commands[allowed][class]; ok {
		c.Inc()
		return
	}
	m.commands[allowed][pgwire.ClassNone].Inc() // a class this table lacks: never expected
}

func (m *metrics) Masked(n int64) { m.masked.Add(float64(n)) }

func (m *metrics) reload(ok bool) { m.reloads[ok].Inc() }

// activeSessions is the number of sessions logged in and not yet ended.
func (m *metrics) activeSessions() int { return int(m.live.Load()) }

// commit is the spool's Config.OnCommit.
func (m *metrics) commit(c spool.Commit) {
	m.fsync.Observe(c.Sync.Seconds())
	m.frames.Observe(float64(c.Frames))
}

// gossipCollector counts the nodes gossip knows by state, when scraped.
type gossipCollector struct{ n *Node }

var peersDesc = prometheus.NewDesc("phigate_cluster_peers", "Nodes this node's gossip knows, by state (alive, dead, left).", []string{"state"}, nil)

func (g gossipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- peersDesc }

func (g gossipCollector) Collect(ch chan<- prometheus.Metric) {
	if g.n == nil || g.n.member == nil {
		return
	}
	counts := map[string]int{cluster.StateAlive: 0, cluster.StateDead: 0, cluster.StateLeft: 0}
	for _, p := range g.n.member.Peers() {
		counts[p.State]++
	}
	for state, c := range counts {
		ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(c), state)
	}
}

// shipCollector reports the recording shipper's counters.
type shipCollector struct{ n *Node }

var shipDescs = struct {
	sealed, uploaded, uploadErrs, indexed, raw, stored, backlog, waiting *prometheus.Desc
}{
	sealed:     prometheus.NewDesc("phigate_ship_chunks_sealed_total", "Recording chunks sealed, signed and made durable for upload.", nil, nil),
	uploaded:   prometheus.NewDesc("phigate_ship_objects_uploaded_total", "Objects (chunks, manifests, digests) the store confirmed.", nil, nil),
	uploadErrs: prometheus.NewDesc("phigate_ship_upload_errors_total", "Failed upload attempts (each is retried).", nil, nil),
	indexed:    prometheus.NewDesc("phigate_ship_sessions_indexed_total", "Sessions whose every chunk and index entry the store confirmed.", nil, nil),
	raw:        prometheus.NewDesc("phigate_ship_raw_bytes_total", "Recorded bytes sealed into chunks.", nil, nil),
	stored:     prometheus.NewDesc("phigate_ship_stored_bytes_total", "Bytes of the chunks and manifests those made.", nil, nil),
	backlog:    prometheus.NewDesc("phigate_ship_backlog_bytes", "Recordings on the node not yet confirmed by the store (spool files and sealed segments).", nil, nil),
	waiting:    prometheus.NewDesc("phigate_ship_waiting_for_auditor_key", "1 while nothing is sealed because the policy has no auditors' public key.", nil, nil),
}

func (c shipCollector) Describe(ch chan<- *prometheus.Desc) {
	d := shipDescs
	for _, x := range []*prometheus.Desc{d.sealed, d.uploaded, d.uploadErrs, d.indexed, d.raw, d.stored, d.backlog, d.waiting} {
		ch <- x
	}
}

func (c shipCollector) Collect(ch chan<- prometheus.Metric) {
	if c.n == nil {
		return
	}
	st, d := c.n.ShipStats(), shipDescs
	waiting := 0.0
	if st.WaitingForKey {
		waiting = 1
	}
	ch <- prometheus.MustNewConstMetric(d.sealed, prometheus.CounterValue, float64(st.Sealed))
	ch <- prometheus.MustNewConstMetric(d.uploaded, prometheus.CounterValue, float64(st.Uploaded))
	ch <- prometheus.MustNewConstMetric(d.uploadErrs, prometheus.CounterValue, float64(st.UploadErrors))
	ch <- prometheus.MustNewConstMetric(d.indexed, prometheus.CounterValue, float64(st.Indexed))
	ch <- prometheus.MustNewConstMetric(d.raw, prometheus.CounterValue, float64(st.RawBytes))
	ch <- prometheus.MustNewConstMetric(d.stored, prometheus.CounterValue, float64(st.StoredBytes))
	ch <- prometheus.MustNewConstMetric(d.backlog, prometheus.GaugeValue, float64(st.Backlog))
	ch <- prometheus.MustNewConstMetric(d.waiting, prometheus.GaugeValue, waiting)
}
