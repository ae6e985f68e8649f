package pgwire

import (
	"io"
	"sync"
)

// copyRelay copies bytes both ways until either side closes: nothing is
// read, judged, masked or recorded. Only a phigate_bench build reaches it
// (benchstage.Relay), as the floor of the benchmark's cost decomposition.
func (c *conn) copyRelay() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c.client, c.up.conn)
		c.client.Close()
	}()
	_, _ = io.Copy(c.up.conn, c.client)
	c.up.conn.Close()
	wg.Wait()
	c.setReason("client closed")
}
