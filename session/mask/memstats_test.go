package mask

import "runtime"

type runtimeMemStats = runtime.MemStats

func readMem(m *runtime.MemStats) { runtime.GC(); runtime.ReadMemStats(m) }
