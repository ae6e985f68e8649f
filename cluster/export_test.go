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
