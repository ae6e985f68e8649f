package cluster

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrUnknownNodeNumber is returned by NodeName for a number no node has.
var ErrUnknownNodeNumber = errors.New("cluster: no node has this number")

// NodeName is the name of the node NodeNumber gave num.
func NodeName(ctx context.Context, c *clientv3.Client, num uint16) (string, error) {
	if num < 1 || num > MaxNodeNumber {
		return "", fmt.Errorf("%w: %d", ErrUnknownNodeNumber, num)
	}
	resp, err := c.KV.Get(ctx, nodeNumByNum+nodeNumString(int(num)))
	if err != nil {
		return "", fmt.Errorf("cluster: read node number: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("%w: %d", ErrUnknownNodeNumber, num)
	}
	return string(resp.Kvs[0].Value), nil
}
