package supervisor

import "github.com/berth-dev/berth/internal/darwinsys"

// newBackend on darwin is the Seatbelt backend: every process under
// /usr/bin/sandbox-exec, held at create by this binary in HoldArg mode,
// stats from the process table and proc_pid_rusage.
func newBackend(string, string) (backend, error) {
	var procs ProcSource
	if err := darwinsys.Load(); err == nil {
		procs = darwinProcs{}
	}
	return newSeatbeltBackend(SeatbeltOptions{Confine: SandboxExec, Procs: procs})
}
