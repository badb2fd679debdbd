package pipeline

import (
	"slices"

	"github.com/jetfold/jetfold/operators"
)

// CacheKeys returns how many keys the pipeline may hold in memory: its cache bound
// (cache.max_keys) for its own projections, as much for the replica of each projection of
// another pipeline that it looks up, and that for each of its partitions. A process budgets
// its memory from it (see internal/memory).
func (p *Pipeline) CacheKeys() int {
	var reads []string
	for _, op := range p.ops {
		if rd, ok := op.(operators.Reader); ok {
			for _, proj := range rd.Reads() {
				if !slices.Contains(p.Projections, proj) && !slices.Contains(reads, proj) {
					reads = append(reads, proj)
				}
			}
		}
	}
	return p.Config.Cache.MaxKeys * (1 + len(reads)) * max(p.Config.Partitions, 1)
}
