package supervisor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// A task's directory (under the plugin's state dir) holds everything that
// outlives the plugin:
//
//	spec.json          the task spec (written by the plugin)
//	state.json         State (written by the supervisor)
//	execs/<exec>.json  exit status of exec'd processes
//	supervisor.log     the supervisor's own log
//	container.log      output, when the spec gives no LogPath
//	rootfs/            where the rootfs is mounted (in the container's
//	                   mount namespace only)
const (
	SpecFile  = "spec.json"
	StateFile = "state.json"
	ExecsDir  = "execs"
)

// WriteJSON writes v to path atomically (temp file, rename), so a reader
// never sees half a file, even if the writer is killed. It does not fsync:
// task state describes processes, which a power loss ends anyway, and an
// fsync per state change would cost more than the container start.
func WriteJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadJSON reads a file WriteJSON wrote.
func ReadJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
