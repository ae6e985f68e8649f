// Package cluster holds what makes several phigate nodes one gateway: the
// embedded etcd member each node runs, and the shared state kept in it. It is
// the only package allowed to depend on etcd or memberlist
// (internal/depcheck enforces it); node/ wires it in.
//
// Built so far: Member (Start bootstraps a one-member cluster in an empty
// directory, or restarts as the member it was; Err; an idempotent Close)
// and Policies, the shared policy document as numbered revisions that are
// never rewritten (Apply, applied only on top of the revision the caller
// based its change on; Get; History; Watch, which delivers the current
// revision and then each new one, in order). Not yet: joining other
// members (learners promoted, voters capped), TLS on peer traffic and join
// tokens, gossip, credentials sealed under a cluster key, the session index
// and node registry, and the node wiring that publishes each policy
// revision as a session.Snapshot (issue 9).
//
// The data path never waits on etcd: a node applies each revision to its
// in-memory state when Watch delivers it.
package cluster
