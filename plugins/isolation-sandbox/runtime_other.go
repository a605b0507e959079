//go:build !linux && !darwin

package main

import (
	"context"
	"syscall"

	"github.com/hashicorp/go-hclog"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// On this platform the sandbox has no backend: the plugin says so by
// declaring no capabilities and answers every task call with
// ErrNotImplemented.
type runtime struct{}

var _ isolation.Runtime = runtime{}

func newRuntime(hclog.Logger) runtime { return runtime{} }

func benchRequested() bool { return false }
func benchMain()           {}
func maybeSupervise() bool { return false }

func unsupported() error {
	return errdefs.NotImplemented("the sandbox isolation mode has no backend on this platform yet")
}

func (runtime) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerIsolation, "sandbox", version.Version), nil
}
func (runtime) ConfigSchema(context.Context) (*schema.Spec, error) {
	return schema.Object(map[string]*schema.Spec{"init_path": schema.Attr("init_path", "string", false)}), nil
}
func (runtime) Configure(context.Context, plugin.ConfigureRequest) error { return nil }
func (runtime) Create(context.Context, isolation.Spec) (isolation.TaskInfo, error) {
	return isolation.TaskInfo{}, unsupported()
}
func (runtime) Start(context.Context, string) (int, error) { return 0, unsupported() }
func (runtime) Exec(context.Context, string, string, *specs.Process) (int, error) {
	return 0, unsupported()
}
func (runtime) Signal(context.Context, string, string, syscall.Signal, bool) error {
	return unsupported()
}
func (runtime) Wait(context.Context, string, string) (isolation.ExitStatus, error) {
	return isolation.ExitStatus{}, unsupported()
}
func (runtime) Attach(context.Context, string, string, isolation.Streams) error { return unsupported() }
func (runtime) ResizePTY(context.Context, string, string, isolation.ConsoleSize) error {
	return unsupported()
}
func (runtime) Pause(context.Context, string) error  { return unsupported() }
func (runtime) Resume(context.Context, string) error { return unsupported() }
func (runtime) Checkpoint(context.Context, string, isolation.CheckpointOptions) error {
	return unsupported()
}
func (runtime) Restore(context.Context, isolation.Spec, string) (isolation.TaskInfo, error) {
	return isolation.TaskInfo{}, unsupported()
}
func (runtime) Stats(context.Context, string) (isolation.Stats, error) {
	return isolation.Stats{}, unsupported()
}
func (runtime) Delete(context.Context, string) (isolation.ExitStatus, error) {
	return isolation.ExitStatus{}, nil
}
func (runtime) List(context.Context) ([]isolation.TaskInfo, error)    { return nil, nil }
func (runtime) Recover(context.Context) ([]isolation.TaskInfo, error) { return nil, nil }
func (runtime) Events(ctx context.Context) (<-chan isolation.TaskEvent, error) {
	ch := make(chan isolation.TaskEvent)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, nil
}
