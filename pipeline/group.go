package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// RunAll runs a runner per pipeline (per partition of a partitioned one, see [Partition])
// until ctx ends or every pipeline with `stop: end` is done and no pipeline follows its
// stream. The first pipeline to fail stops the others; the error names it.
func RunAll(ctx context.Context, ps []*Pipeline, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var jobs []partRun
	for _, p := range ps {
		runs, err := partRuns(p)
		if err != nil {
			return err
		}
		jobs = append(jobs, runs...)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(jobs))
	for i, u := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uo := o
			uo.Partition = u.part
			if err := NewRunner(u.p, uo).Run(ctx); err != nil {
				if u.part.partitioned() {
					err = fmt.Errorf("partition %d: %w", u.part.Index, err)
				}
				errs[i] = fmt.Errorf("pipeline %s: %w", u.p.Name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
