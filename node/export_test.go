package node

// SealPolicyForTest seals p's clear passwords under s, as a node does
// before storing a policy.
func SealPolicyForTest(p *Policy, s Sealer) error { return sealPolicy(p, s) }

// NotReady is why /readyz fails ("" when it does not).
func (n *Node) NotReady() string { return n.notReady() }
