package sandbox

import "time"

// Cgroup is a container's cgroup in every hierarchy it has (cgroup v1: one
// directory per hierarchy; v2: the unified directory). The sandbox joins it
// before the init does anything, freezes it for pause, reads stats from it,
// and removes what it created.
type Cgroup struct {
	// V1 maps a v1 hierarchy's mount directory name ("memory", "freezer",
	// "systemd") to the container's directory in it.
	V1 map[string]string `json:"v1,omitempty"`
	// V2 is the container's directory in the unified hierarchy, if the host
	// is pure cgroup v2.
	V2 string `json:"v2,omitempty"`
	// Created lists the directories the sandbox made (removed by Remove).
	Created []string `json:"created,omitempty"`
}

// Stats is a cgroup's use at one instant (the fields of resources.Usage it
// can fill; this package stays free of the SDK's gRPC dependencies, so the
// init binary stays small).
type Stats struct {
	Time            time.Time
	CPUUsageNanos   uint64
	MemoryBytes     uint64
	MemoryPeakBytes uint64
	Pids            uint64
}
