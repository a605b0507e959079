package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/isolation"
)

// A task's directory under the plugin's state dir holds everything that
// outlives the plugin:
//
//	tasks/<id>/spec.json        the isolation.Spec (written by the plugin)
//	tasks/<id>/state.json       taskState (written by the supervisor)
//	tasks/<id>/execs/<exec>.json exit status of exec'd processes
//	tasks/<id>/supervisor.log   the supervisor's own log
//	tasks/<id>/container.log    output, when the spec gives no LogPath
//	tasks/<id>/rootfs/          where the rootfs is mounted (in the
//	                            container's mount namespace only)

// taskState is a task as its supervisor records it.
type taskState struct {
	ID            string                `json:"id"`
	SupervisorPid int                   `json:"supervisor_pid"`
	Socket        string                `json:"socket"`
	Pid           int                   `json:"pid"`
	Status        isolation.Status      `json:"status"`
	CreatedAt     time.Time             `json:"created_at"`
	StartedAt     time.Time             `json:"started_at,omitzero"`
	Exit          *isolation.ExitStatus `json:"exit,omitempty"`
	Cgroup        *sandbox.Cgroup       `json:"cgroup,omitempty"`
}

const (
	specFile  = "spec.json"
	stateFile = "state.json"
	execsDir  = "execs"
)

// writeJSON writes v to path atomically (temp file, rename), so a reader
// never sees half a file, even if the writer is killed. It does not fsync:
// task state describes processes, which a power loss ends anyway, and an
// fsync per state change would cost more than the container start.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
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

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
