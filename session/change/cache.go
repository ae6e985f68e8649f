package change

import "sync"

// Cache memoises Analyze for repeated statement texts (prepared statements,
// ORMs), keyed by the exact text. Plans are read-only once made, so one
// may serve many sessions at once. It is safe for concurrent use.
type Cache struct {
	bound int
	max   int

	mu      sync.Mutex
	entries map[string]cached
	order   []string // insertion ring for eviction
	next    int
}

type cached struct {
	plan *Plan
	err  error
}

// maxCachedSQL bounds one cached text, so that a few huge statements
// cannot pin memory.
const maxCachedSQL = 8 << 10

// NewCache analyses with bound (see Analyze) and holds up to n texts (n <=
// 0 means 1024).
func NewCache(bound, n int) *Cache {
	if n <= 0 {
		n = 1024
	}
	return &Cache{bound: bound, max: n, entries: make(map[string]cached, n), order: make([]string, n)}
}

// Analyze is Analyze(sql, bound) with memoisation.
func (c *Cache) Analyze(sql string) (*Plan, error) {
	if len(sql) > maxCachedSQL {
		return Analyze(sql, c.bound)
	}
	c.mu.Lock()
	e, ok := c.entries[sql]
	c.mu.Unlock()
	if ok {
		return e.plan, e.err
	}
	p, err := Analyze(sql, c.bound)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[sql]; !ok {
		if old := c.order[c.next]; old != "" {
			delete(c.entries, old)
		}
		c.order[c.next] = sql
		c.next = (c.next + 1) % c.max
		c.entries[sql] = cached{p, err}
	}
	return p, err
}
