package store

import (
	"sync"
	"testing"
)

// TestOpenTogetherOnANewDirectory: gantry commands started together on a
// new state directory (a deploy and a status beside it in CI) all open the
// store: none fails with SQLITE_BUSY while another sets the file up.
func TestOpenTogetherOnANewDirectory(t *testing.T) {
	for range 30 {
		dir := t.TempDir()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := Open(dir)
				if err != nil {
					errs <- err
					return
				}
				s.Close()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}
