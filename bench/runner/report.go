package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// Report is the JSON results file of one invocation of the bench command.
// Durations are integer nanoseconds; fields are only ever added.
type Report struct {
	Started time.Time `json:"started"`
	Host    Host      `json:"host"`
	Results []Result  `json:"results"`
}

// Host identifies the machine the results were measured on, since ratios
// are only comparable on like hardware.
type Host struct {
	Hostname  string `json:"hostname"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`
	GoVersion string `json:"go_version"`
}

// ThisHost describes the machine the runner is on.
func ThisHost() Host {
	name, _ := os.Hostname()
	return Host{
		Hostname:  name,
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
	}
}

// WriteReport writes rep as indented JSON to path, creating its directory.
func WriteReport(path string, rep Report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
