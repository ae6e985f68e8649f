package record

import "encoding/json"

// This file reads the layouts earlier versions wrote. Verification is over
// the recorded bytes, so a recording in an old layout verifies as it did;
// only the decoded Event changes shape.

// UnmarshalJSON decodes a command in the current layout or in the first
// one, which recorded only PostgreSQL commands and kept their fields at the
// top level: "protocol" was the flow (simple, extended or function) and
// "step", "sql", "raw", "statement", "portal" and "params" sat beside it.
// Such a command decodes as Protocol ProtocolPostgres with those fields in
// Postgres, so that replay and anything else reading recordings sees one
// shape. The first layout is recognised by its top-level "sql", which it
// always wrote and the current layout never writes.
func (c *Command) UnmarshalJSON(data []byte) error {
	type current Command // the same fields, without this method
	var v struct {
		current
		Step      string  `json:"step"`
		SQL       *string `json:"sql"`
		Raw       []byte  `json:"raw"`
		Statement string  `json:"statement"`
		Portal    string  `json:"portal"`
		Params    []Param `json:"params"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*c = Command(v.current)
	if v.SQL != nil && c.Postgres == nil {
		c.Postgres = &PostgresCommand{Flow: c.Protocol, Step: v.Step, SQL: *v.SQL, Raw: v.Raw,
			Statement: v.Statement, Portal: v.Portal, Params: v.Params}
		c.Protocol = ProtocolPostgres
	}
	return nil
}
