// Package pgwire is phigate's PostgreSQL proxy: it speaks the frontend/backend
// protocol (v3.0) to agents and to the real server, between them authenticating
// the agent's identity token, enforcing the policy grant on every statement,
// masking result rows and recording every command.
//
// The data path of one session:
//
//	agent --TLS--> startup, token, grant --> upstream login with the gateway's credential
//	agent  ==> frontend loop: classify (pg_query), decide, record command (write-ahead) ==> upstream
//	agent <==  backend loop: describe columns, mask rows, record result                <== upstream
//
// Invariants this package keeps:
//   - no command reaches the upstream before its event is durable
//     (write-ahead), with one exception: in a session whose grant is
//     read-only, and whose upstream session is therefore opened with
//     default_transaction_read_only=on, a command may run while its event is
//     being synced, since it cannot change data;
//   - no output reaches the agent before the event of the command that
//     produced it is durable (outBuf's before hook waits on the spool);
//     result events ride the next group commit and are durable before any
//     output of the session's next command;
//   - a command that cannot be recorded is not forwarded: the session ends with
//     an error;
//   - the upstream credential never reaches the agent: the gateway logs in
//     upstream itself and only relays the session afterwards;
//   - a denied statement never reaches upstream: it is swapped for one that is
//     certain to fail, so the server's transaction state matches what the agent
//     is told, and the server's error is replaced by SQLSTATE 42501; the rest
//     of its batch is dropped, as the server would skip it;
//   - names resolve only on what the server confirmed (state.go): a prepared
//     statement or portal changes when the server says it did, an Execute
//     of a portal phigate cannot name is refused, and every Execute is
//     recorded with the statement text it runs;
//   - the server does what phigate classified: the backend ends the session
//     when it completes more statements, a writing tag for a statement
//     classed as not writing, a COPY that was not foreseen, or reports a
//     lexer setting phigate's parser does not share;
//   - an UPDATE, DELETE, INSERT ... ON CONFLICT or MERGE is recorded with
//     the rows it touched, read before and after it on the session's own
//     connection, in its own transaction, under its role (snapshot.go):
//     the before rows are durable before it runs; the reads are its own
//     parse tree deparsed, never text pasted together; they run no
//     function, view or foreign table the statement would not run once,
//     and a statement they cannot follow is recorded as not analysed,
//     never silently; the agent receives the same bytes as without them,
//     and a read that fails leaves its transaction as it was, or ends the
//     session;
//   - malformed or oversized input ends only that session, with 08P01, and a
//     panic in one of its goroutines ends only that session too;
//   - a cancel is recorded before it is sent, and never after session.end.
//
// Which goroutine owns what is said on conn: frontendState and backendState
// belong to their loop; the expect queue, serverState and the transaction
// state (txState) are shared under conn.mu. A snapshot's frontend waits
// (quiesce, await) are the one place the frontend waits for the backend's
// answers to messages it did not forward for the agent; the backend hands
// their results over in the step, wrap and changeRun it was given, before
// closing their done channels. The two durability waits are the outBufs' before hooks, installed
// in relay (conn.go): towards the upstream, every event so far (write-ahead
// sessions); towards the agent, the latest command's event.
//
// It never logs SQL text, parameters, row data, tokens or passwords.
package pgwire
