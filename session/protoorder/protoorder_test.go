package protoorder

import (
	"slices"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fields come in declaration order, every populated one and no other,
// and the walk stops when f says so.
func TestRangeDeclarationOrder(t *testing.T) {
	sel := &pg_query.SelectStmt{
		WhereClause: pg_query.MakeAConstIntNode(1, 0),
		FromClause:  []*pg_query.Node{pg_query.MakeSimpleRangeVarNode("t", 0)},
		WithClause:  &pg_query.WithClause{},
		LimitCount:  pg_query.MakeAConstIntNode(2, 0),
		Op:          pg_query.SetOperation_SETOP_NONE + 1,
	}
	m := sel.ProtoReflect()
	var got []string
	Range(m, func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		got = append(got, string(fd.Name()))
		return true
	})
	var want []string
	fds := m.Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		if m.Has(fds.Get(i)) {
			want = append(want, string(fds.Get(i).Name()))
		}
	}
	if !slices.Equal(got, want) || len(got) != 5 {
		t.Fatalf("fields %v, want %v", got, want)
	}
	if i := slices.Index(got, "from_clause"); i < 0 || i > slices.Index(got, "where_clause") || i > slices.Index(got, "with_clause") {
		t.Fatalf("from_clause not before where_clause and with_clause: %v", got)
	}
	n := 0
	Range(m, func(protoreflect.FieldDescriptor, protoreflect.Value) bool {
		n++
		return n < 2
	})
	if n != 2 {
		t.Fatalf("Range went on after f returned false: %d calls", n)
	}
}
