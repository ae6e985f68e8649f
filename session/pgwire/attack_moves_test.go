package pgwire_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// The attacker's moves, shared by the cases of attack_test.go.

// hideSCS hides sql from a classifier that lexes with
// standard_conforming_strings on, from a server where it is off: the
// classifier reads the string 'a\' and then a dollar-quoted string; for the
// server the backslash escapes the quote, so its string runs to the next
// quote, after which come sql and a comment. sql must hold no "$$".
func hideSCS(sql string) string { return `SELECT 'a\' , $$ ' ; ` + sql + ` ; -- $$` }

// scsOff turns standard_conforming_strings off and then, hidden, the
// session's read-only default: later queries run in read-write transactions.
func scsOff(c *pgx.Conn) {
	runSimple(c, "SET standard_conforming_strings = off", hideSCS("SET default_transaction_read_only = off"))
}

// hideMB hides sql from a classifier that reads the query as UTF-8, from
// a server whose client_encoding reads lead+0x5C as one character (SJIS,
// BIG5, GBK, GB18030): the classifier reads E'<lead>\' ... ' as one string,
// \' escaping the quote; the server's string ends at that quote, then it
// runs sql and a comment. sql must hold no quote and no backslash.
func hideMB(lead byte, sql string) string {
	return "SELECT E'" + string([]byte{lead}) + `\' ; ` + sql + ` ; -- '`
}

// primeCache runs SELECT 'x' as another identity: any agent's harmless
// query is enough to fill the node-wide classification cache.
func primeCache(t *testing.T, a *arena) {
	c, err := a.pgxAs("writer-ci", nil, false)
	if err != nil {
		t.Fatalf("prime: %v", err)
	}
	runSimple(c, "SELECT 'x'")
	_ = c.Close(context.Background())
}

// sqlAttack runs each statement as reader-bot with the simple protocol.
func sqlAttack(sqls ...string) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) { runSimple(a.mustAttacker(nil), sqls...) }
}

// extAttack runs one statement as reader-bot with the extended protocol.
func extAttack(sql string, args ...any) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) { runExtended(a.mustAttacker(nil), sql, args...) }
}

// hiddenAttack turns standard_conforming_strings off, then the read-only
// default (hidden), then runs each statement hidden the same way.
func hiddenAttack(sqls ...string) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) {
		c := a.mustAttacker(nil)
		scsOff(c)
		for _, s := range sqls {
			runSimple(c, hideSCS(s))
		}
	}
}

// mbAttack sets a client encoding with setSQL (empty: it came with the
// startup params), then hides a read-only switch and sql behind lead+0x5C,
// after another agent primed the classification cache.
func mbAttack(params map[string]string, setSQL string, lead byte, sql string) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) {
		primeCache(t, a)
		c, err := a.attacker(params)
		if err != nil {
			return // refused at startup: nothing ran
		}
		if setSQL != "" {
			runSimple(c, setSQL)
		}
		runSimple(c, hideMB(lead, "SET default_transaction_read_only = off"), hideMB(lead, sql))
	}
}

// Extended-protocol messages, for the protocol-level cases.

func mParse(name, sql string) *pgproto3.Parse { return &pgproto3.Parse{Name: name, Query: sql} }
func mBind(portal, stmt string) *pgproto3.Bind {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt}
}
func mDescribeS(name string) *pgproto3.Describe {
	return &pgproto3.Describe{ObjectType: 'S', Name: name}
}
func mExecute(portal string) *pgproto3.Execute { return &pgproto3.Execute{Portal: portal} }
func mCloseS(name string) *pgproto3.Close      { return &pgproto3.Close{ObjectType: 'S', Name: name} }
func mCloseP(name string) *pgproto3.Close      { return &pgproto3.Close{ObjectType: 'P', Name: name} }
func mSync() *pgproto3.Sync                    { return &pgproto3.Sync{} }
func mQuery(sql string) *pgproto3.Query        { return &pgproto3.Query{String: sql} }

type msgList = []pgproto3.FrontendMessage

// rebindAfterSavepoint is the scenario and its variations: inside a
// transaction a portal "p" of PHI is bound (before), the agent tries to
// rebind the name to a harmless described statement in a way the server
// refuses or skips (rebind), recovers the transaction (recover), and
// executes "p".
func rebindAfterSavepoint(before, rebind, recover msgList) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) {
		r := a.mustRaw(nil)
		r.query("BEGIN")
		r.run(nil, before...)
		r.run(nil, rebind...)
		r.run(nil, recover...)
		r.run(nil, mExecute("p"), mSync())
		r.query("COMMIT")
		r.terminate()
	}
}

// ownerSetup runs sql as the database owner (the upstream role), as a DBA
// or a writer identity would have before the attack.
func ownerSetup(sql string) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) {
		a.suExec(fmt.Sprintf("SET ROLE %s; %s; RESET ROLE", pgx.Identifier{a.role}.Sanitize(), sql))
	}
}

// refusedConnect requires the attacker's connection with params to be
// refused, as the server would refuse it.
func refusedConnect(params map[string]string) func(*testing.T, *arena) {
	return func(t *testing.T, a *arena) {
		if _, err := a.attacker(params); err == nil {
			t.Errorf("a session with startup parameters %v was accepted; the server refuses them", params)
		}
	}
}

// drain reads a raw session until the gateway closes it.
func drainRaw(r *rawClient) {
	for {
		if _, err := r.receive(); err != nil {
			return
		}
	}
}

// cancelRace ends sessions while CancelRequests carrying their keys
// arrive, many times over: a cancel that finds its session closing must
// neither crash the node nor go unrecorded. The dangerous moment is the
// last microseconds of a session's teardown, just before the client sees
// its socket close; each iteration aims a dense burst of cancels (on
// connections dialled beforehand, waiting in the gateway's startup read)
// at the moment the previous iterations' sockets closed.
func cancelRace(t *testing.T, a *arena) {
	const iterations, burst = 100, 16
	var teardown []time.Duration
	for i := 0; i < iterations; i++ {
		r, err := a.raw("reader-bot", nil)
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
		pkt := binary.BigEndian.AppendUint32(nil, 16)
		pkt = binary.BigEndian.AppendUint32(pkt, 80877102)
		pkt = binary.BigEndian.AppendUint32(pkt, r.pid)
		pkt = append(pkt, r.secret...)
		conns := make([]net.Conn, 0, burst)
		for range burst {
			nc, err := net.DialTimeout("tcp", a.g.addr, 2*time.Second)
			if err != nil {
				t.Fatalf("iteration %d: dial: %v", i, err)
			}
			conns = append(conns, nc)
		}
		aim := time.Duration(0)
		if len(teardown) > 0 {
			sorted := slices.Sorted(slices.Values(teardown))
			aim = sorted[len(sorted)/2] - 300*time.Microsecond
		}
		r.fe.Send(&pgproto3.Terminate{})
		start := time.Now()
		_ = r.fe.Flush()
		closed := make(chan time.Duration, 1)
		go func() {
			drainRaw(r)
			closed <- time.Since(start)
		}()
		for time.Since(start) < aim {
		}
		for k, nc := range conns {
			_, _ = nc.Write(pkt)
			for spin := time.Now(); time.Since(spin) < time.Duration(20+k%4*10)*time.Microsecond; {
			}
		}
		teardown = append(teardown, <-closed)
		for _, nc := range conns {
			_ = nc.Close()
		}
	}
}
