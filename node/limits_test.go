package node

import "testing"

func TestSessionCap(t *testing.T) {
	for _, c := range []struct {
		configured int
		nofile     uint64
		limit, fit int
	}{
		{0, 20000, 9360, 9360},                   // (20000 - 1024 - 256) / 2
		{0, 1 << 20, 523648, 523648},             // fs.nr_open's default
		{0, 1024, 1, 1},                          // below the reserve: one session, not none
		{0, 1282, 1, 1},                          // the reserves and no more
		{0, 1284, 2, 2},                          // the reserves and two sessions' descriptors
		{500, 20000, 500, 9360},                  // configured under the limit
		{10000, 20000, 10000, 9360},              // configured over it: kept, with a warning
		{0, 1<<64 - 1, 1 << 40 / 2, 1 << 40 / 2}, // RLIM_INFINITY
	} {
		limit, fit := sessionCap(c.configured, c.nofile)
		if limit != c.limit || fit != c.fit {
			t.Errorf("sessionCap(%d, %d) = %d, %d; want %d, %d", c.configured, c.nofile, limit, fit, c.limit, c.fit)
		}
	}
}
