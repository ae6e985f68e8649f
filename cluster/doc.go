// Package cluster will hold everything that makes several phigate nodes one
// gateway: the embedded etcd member (policies, resources, sealed credentials,
// approvals, the session index and the node registry) and memberlist gossip for
// membership and liveness.
//
// It is the only package allowed to import etcd or memberlist. Today a node runs
// alone and reads its state from its configuration file; the package is kept in
// the tree so that the import rule has a home from the start (see
// ARCHITECTURE.md, "Roadmap hooks").
package cluster
