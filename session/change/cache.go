package change

import "sync"

// Cache memoises Analyze for repeated statement texts (prepared statements,
// ORMs), keyed by the exact text, and plans a text it has not seen through
// its template when the template is known (template.go): texts that differ
// only in their constants (the simple protocol's way of passing values)
// are planned once. Plans are read-only once made, so one may serve many
// sessions at once. It is safe for concurrent use.
type Cache struct {
	bound int

	mu        sync.Mutex
	entries   ring[cached]
	templates ring[learnt]
}

type cached struct {
	plan *Plan
	err  error
}

// learnt is a template's plan, or (usable false) the finding that its
// texts must be planned from their own text.
type learnt struct {
	usable bool
	plan   *Plan
	err    error
}

// ring is a map bounded by evicting in insertion order.
type ring[V any] struct {
	entries map[string]V
	order   []string
	next    int
}

func newRing[V any](n int) ring[V] {
	return ring[V]{entries: make(map[string]V, n), order: make([]string, n)}
}

func (r *ring[V]) get(k string) (V, bool) { v, ok := r.entries[k]; return v, ok }

func (r *ring[V]) put(k string, v V) {
	if _, ok := r.entries[k]; ok {
		return
	}
	if old := r.order[r.next]; old != "" {
		delete(r.entries, old)
	}
	r.order[r.next] = k
	r.next = (r.next + 1) % len(r.order)
	r.entries[k] = v
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
	return &Cache{bound: bound, entries: newRing[cached](n), templates: newRing[learnt](n)}
}

// Analyze is Analyze(sql, bound) with memoisation.
func (c *Cache) Analyze(sql string) (*Plan, error) {
	if len(sql) > maxCachedSQL {
		return Analyze(sql, c.bound)
	}
	c.mu.Lock()
	e, ok := c.entries.get(sql)
	c.mu.Unlock()
	if ok {
		return e.plan, e.err
	}
	p, err := c.analyze(sql)
	c.mu.Lock()
	c.entries.put(sql, cached{p, err})
	c.mu.Unlock()
	return p, err
}

// analyze plans a text the cache has not seen: through its template when
// the template is known and usable, else from the text (learning the
// template on the way).
func (c *Cache) analyze(sql string) (*Plan, error) {
	tmpl, literals, ok := shape(sql)
	if !ok {
		return Analyze(sql, c.bound)
	}
	c.mu.Lock()
	l, known := c.templates.get(tmpl)
	c.mu.Unlock()
	if known && l.usable {
		if l.plan == nil {
			return nil, l.err
		}
		if p, ok := l.plan.bind(literals); ok {
			return p, nil
		}
	}
	p, err := Analyze(sql, c.bound)
	if known {
		return p, err
	}
	tp, terr := Analyze(tmpl, c.bound)
	if tp != nil {
		tp.splits = &splits{m: map[string]segments{}}
	}
	l = learnt{usable: sameResult(p, err, tp, terr, literals)}
	if l.usable {
		l.plan, l.err = tp, terr
	}
	c.mu.Lock()
	c.templates.put(tmpl, l)
	c.mu.Unlock()
	return p, err
}
