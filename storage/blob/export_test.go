package blob

// SetSyncFault makes s ask f before each fdatasync and directory fsync; an
// error from f makes that sync fail (nil f: no faults).
func SetSyncFault(s *FS, f func(path string) error) { s.syncFault = f }
