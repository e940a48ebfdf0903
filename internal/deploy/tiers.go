package deploy

import (
	"context"
	"sync"
)

// runTier applies the services of one tier together, apply(ctx, i, name)
// for each, which says whether the service passed. The first that fails
// cancels the others' ctx: the release is lost anyway, and the rollback
// should not wait. It returns the index of the first that failed, or -1.
func runTier(ctx context.Context, tier []string, apply func(ctx context.Context, i int, name string) bool) int {
	tierCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	first := -1
	var wg sync.WaitGroup
	for i, name := range tier {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !apply(tierCtx, i, name) {
				mu.Lock()
				if first < 0 {
					first = i
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
