package verifier

import (
	"context"
	"sync"

	"golang.org/x/sync/errgroup"
)

// inParallel calls do(i) for every i in order, at most n calls at a time (n < 2: one after
// another, in order, as a sequential run would). Each call writes its own result, so results do
// not depend on n; only the order of requests to the server does. progress, if set, is told how
// many calls have finished, one call at a time. The first error stops the calls not yet started
// and is returned.
func inParallel(ctx context.Context, n int, order []int, progress func(done int), do func(ctx context.Context, i int) error) error {
	if progress == nil {
		progress = func(int) {}
	}
	if n < 2 {
		for done, i := range order {
			progress(done)
			if err := do(ctx, i); err != nil {
				return err
			}
		}
		progress(len(order))
		return nil
	}
	parent := ctx
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	var mu sync.Mutex
	done := 0
	progress(0)
	for _, i := range order {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := do(ctx, i); err != nil {
				return err
			}
			mu.Lock()
			done++
			progress(done)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return parent.Err() // an interrupt stops the loop above without an error of a call's own
}
