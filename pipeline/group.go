package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// RunAll runs a runner per pipeline until ctx ends or every pipeline with `stop: end` is done
// and no pipeline follows its stream. The first pipeline to fail stops the others; the error
// names it.
func RunAll(ctx context.Context, ps []*Pipeline, o Options) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := NewRunner(p, o).Run(ctx); err != nil {
				errs[i] = fmt.Errorf("pipeline %s: %w", p.Name, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
