package tail

// SetNoRecycle makes Recycle a no-op, as for an engine that never recycles.
func SetNoRecycle(v bool) { noRecycle = v }

// RecycleStats returns how many read blocks t reused and forgot.
func RecycleStats(t *Tailer) (reused, dropped uint64) { return t.recycleStats() }
