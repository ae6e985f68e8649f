// Package protoorder ranges over a protobuf message's populated fields in
// the order they are declared.
//
// protoreflect.Message.Range visits them in an order that protobuf-go
// changes on purpose from one build of a binary to the next. What phigate
// collects from a pg_query tree (the relations a snapshot reads, the
// target first; the relations and calls a recording lists) must not
// depend on the build.
package protoorder

import "google.golang.org/protobuf/reflect/protoreflect"

// Range calls f for each populated field of m in declaration order, until
// f returns false.
func Range(m protoreflect.Message, f func(protoreflect.FieldDescriptor, protoreflect.Value) bool) {
	fds := m.Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if m.Has(fd) && !f(fd, m.Get(fd)) {
			return
		}
	}
}
