// Package cluster holds what makes several phigate nodes one gateway: the
// embedded etcd member each node runs, the node-to-node API and gossip
// between them, and the shared state kept in etcd. It is the only package
// allowed to depend on etcd or memberlist (internal/depcheck enforces it);
// node/ wires it in.
//
// Member (member.go) is a node's membership. Start bootstraps a new
// cluster in an empty Dir, joins an existing one with a join token, or
// restarts as the member it was. The first node creates the cluster's PKI
// under Dir/pki (pki.go): a CA (ECDSA P-256, ten years), its own
// certificate (a year; names the hosts of its addresses and loopback) and
// the named cluster-wide secrets (Config.Secrets; GossipSecret always).
// Every member holds the CA key, so that any member can admit a joiner.
// The certificates secure etcd peer traffic and the etcd client listener
// (both mutual TLS, cluster CA only) and the node-to-node API.
//
// The node-to-node API (api.go) is HTTPS on APIAddr, TLS 1.3. JoinPath
// admits joiners; every handler registered with Handle is served only to
// a caller whose certificate the cluster CA signed; PeerClient calls
// other nodes with this node's certificate.
//
// Joining (join.go): JoinToken gives "phgjoin1." + base64url(SHA-256 of
// the CA certificate, 32-byte secret); the cluster keeps only
// SHA-256(secret) under /phigate/join/, on an etcd lease of the token's
// lifetime. The joiner trusts only a server chaining to the pinned CA; the
// member checks the secret, refuses a taken name, adds the joiner as an
// etcd learner, signs its certificate and sends it the CA, the secrets,
// the initial cluster and gossip seeds, which the joiner saves to Dir/pki
// in one rename (a refused join leaves no pki directory). Nodes' addresses
// are kept in a registry under /phigate/nodes/.
//
// Voters (membership.go): on the leader, a loop promotes healthy, caught
// up learners while fewer than Config.Voters voters are healthy (gossip
// alive, or down for less than a grace period, so restarts cost no
// promotion), never beyond five voters. Leave (handing leadership over
// first), Remove, Status and Quorum (a linearizable read) are the
// membership operations; Close keeps the membership.
//
// Gossip (gossip.go) is memberlist on GossipAddr, encrypted and
// authenticated with the gossip secret; each node's metadata (NodeMeta)
// carries its addresses, version and load. Peers lists what gossip sees.
// memberlist reports no suspicion: a suspect node is alive until dead.
//
// On top of the member: Policies (policy.go), the shared policy document
// as numbered revisions that are never rewritten (Apply, applied only on
// top of the revision the caller based its change on; Get; History;
// Watch, which delivers the current revision and then each new one, in
// order), the session index and node numbers (sessions.go), and Approvals
// (approvals.go), the requests of just-in-time approval: each change a
// transaction that compares the request's revision, so one of two racing
// votes wins; held requests tied to their node's lease; expired and
// abandoned ones swept by every node. Approvals.TxnToWatch (probe.go)
// times the cluster state alone, a write on one member until another's
// watch sees it, for bench/approval (which reaches it through
// node.Node.Approvals); a node never calls it.
//
// The data path never waits on etcd: a node applies each revision to its
// in-memory state when Watch delivers it. This package never logs a join
// token, a secret or a key.
package cluster
