package tail

// SetNoRecycle makes Recycle a no-op, as for an engine that never recycles.
func SetNoRecycle(v bool) { noRecycle = v }

// RecycleStats returns how many read blocks t reused and forgot.
func RecycleStats(t *Tailer) (reused, dropped uint64) { return t.recycleStats() }

// saveCheckpoints writes doc as the next checkpoint of path, as a Tailer
// started on that data_dir would.
func saveCheckpoints(path string, doc *checkpointDoc, buf []byte) ([]byte, error) {
	st, err := readCheckpoints(path)
	if err != nil {
		return buf, err
	}
	s := newCkptStore(path, st)
	defer s.close()
	return s.save(doc, buf)
}
