package node

import "testing"

func TestSessionCap(t *testing.T) {
	for _, c := range []struct {
		configured int
		nofile     uint64
		limit, fit int
	}{
		{0, 20000, 6325, 6325},                   // (20000 - 1024) / 3
		{0, 1 << 20, 349184, 349184},             // fs.nr_open's default
		{0, 1024, 1, 1},                          // below the reserve: one session, not none
		{500, 20000, 500, 6325},                  // configured under the limit
		{10000, 20000, 10000, 6325},              // configured over it: kept, with a warning
		{0, 1<<64 - 1, 1 << 40 / 3, 1 << 40 / 3}, // RLIM_INFINITY
	} {
		limit, fit := sessionCap(c.configured, c.nofile)
		if limit != c.limit || fit != c.fit {
			t.Errorf("sessionCap(%d, %d) = %d, %d; want %d, %d", c.configured, c.nofile, limit, fit, c.limit, c.fit)
		}
	}
}
