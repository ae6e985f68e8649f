// Package change plans how to read the rows a data-changing statement
// touches, so that a proxy can record them before and after the statement
// runs (record.Change events).
//
// Analyze takes one statement's text and, with PostgreSQL's own parser
// (pg_query), finds what it changes: the target table, its alias and ONLY,
// the WHERE clause, FROM and USING lists, the ON CONFLICT target and the
// rows an INSERT proposes, the MERGE source and join, and the statement's
// own WITH clause. From those parts of the parse tree it builds the reads
// as parse trees and has the parser's deparser write them:
//
//	UPDATE    before: SELECT t.* FROM t WHERE <where> [EXISTS over FROM]  FOR NO KEY UPDATE OF t
//	          after:  SELECT t.* FROM t WHERE <primary key = the before rows' keys>
//	DELETE    before: SELECT t.* FROM t WHERE <where> [EXISTS over USING]  FOR UPDATE OF t
//	INSERT .. ON CONFLICT (cols) [DO UPDATE]
//	          before: WITH r AS (SELECT cols FROM t WHERE false UNION ALL <VALUES or SELECT>)
//	                  SELECT t.* FROM t WHERE EXISTS (SELECT FROM r WHERE t.col = r.col ...)
//	                  [FOR NO KEY UPDATE OF t, for DO UPDATE]
//	          after:  the same, without the lock, or the before rows' keys
//	MERGE     before: SELECT t.* FROM t WHERE EXISTS (SELECT FROM <source> WHERE <join>)
//	                  FOR UPDATE / FOR NO KEY UPDATE OF t (as its actions lock), or no lock
//	          after:  the same, without the lock, or the before rows' keys
//
// Every read carries LIMIT bound+1, so that a proxy records at most bound
// rows and knows whether there were more; the statement's command tag
// gives the true count. Each read takes the row lock the statement itself
// takes, so that the rows cannot change between the read and the
// statement. Equality on keys and conflict columns is always
// OPERATOR(pg_catalog.=): a look-alike operator on the search path is never
// called by a read. The typed UNION ALL of an INSERT's rows gives its
// values the target columns' types, as the INSERT itself does.
//
// A read never holds client text pasted as a string: it is the client's
// own parse tree nodes inside phigate's, deparsed. After deparsing, the
// read is parsed again and must give back exactly the tree phigate built
// (locations aside), one SELECT and nothing else; a deparser that would
// change a condition's meaning therefore leaves the statement "not
// analysed" rather than read other rows. FuzzAnalyze holds that.
//
// What the package does not decide, because it needs the server: which
// relations the names denote (a proxy resolves Plan.Relations in the
// session, and must not run a read on a view, a foreign table or a table
// with rewrite rules, whose reading could execute code the statement would
// not), the table's key columns (Plan.After takes them), and whether the
// statement's functions are free of side effects (a proxy must not run a
// read whose condition calls anything not known to be).
//
// Statements that change rows in ways this package cannot read around are
// reported as *NotAnalysed with the reason (a data-modifying WITH, WHERE
// CURRENT OF, ON CONFLICT without a column target, MERGE ... NOT MATCHED BY
// SOURCE, EXPLAIN ANALYZE or COPY of a data change, CALL, DO, TRUNCATE),
// never silently skipped. Plain INSERTs and statements that change no rows
// give no plan and no error.
//
// The package is pure: no I/O, no clock, no logging (statements hold PHI).
package change
