package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// Fast shortens the member's timeouts so that tests of several members
// run in seconds: etcd ticks and elections, the voter loop, gossip probes.
func Fast(c Config) Config {
	c.timing = timing{
		tickMs: 20, electionMs: 300, reconcileEvery: 200 * time.Millisecond, voterGrace: 6 * time.Second, rejoinEvery: time.Second,
		gossip: func(g *memberlist.Config) {
			g.ProbeInterval = 300 * time.Millisecond
			g.ProbeTimeout = 250 * time.Millisecond
			g.GossipInterval = 50 * time.Millisecond
			g.PushPullInterval = 2 * time.Second
			g.SuspicionMult = 3
			g.TCPTimeout = time.Second
			g.DeadNodeReclaimTime = time.Second
		},
	}
	return c
}

// Crash stops the member as a crash would: gossip without a word, the API
// and etcd at once; its membership stays.
func Crash(m *Member) {
	m.closeMu.Lock()
	defer m.closeMu.Unlock()
	m.closed = true
	close(m.stop)
	m.loops.Wait()
	m.gossip.list.Shutdown()
	m.api.Close()
	m.etcd.Server.HardStop()
	m.client.Close()
	m.etcd.Close()
}
