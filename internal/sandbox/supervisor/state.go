package supervisor

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
