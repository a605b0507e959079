//go:build !linux

package sdk

import (
	"os"
	"time"
)

// watchParent exits the plugin once its parent (the core) is gone, since
// darwin has no Pdeathsig: an orphan is re-parented, so its parent pid
// changes.
func watchParent() {
	parent := os.Getppid()
	go func() {
		for range time.Tick(time.Second) {
			if os.Getppid() != parent {
				os.Exit(0)
			}
		}
	}()
}
