package host

import (
	"context"
	"runtime"
	"time"

	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// Probe launches the plugin of s just long enough to read its Info and
// config schema (as `berth config validate` needs), then stops it. Launch
// problems come back as the same errors Start reports.
func Probe(ctx context.Context, opts Options, s Spec) (plugin.Info, *schema.Spec, error) {
	if s.StartTimeout == 0 {
		s.StartTimeout = DefaultStartTimeout
	}
	var spec *schema.Spec
	s.DecodeConfig = func(got *schema.Spec) (schema.Config, error) {
		spec = got
		return schema.Config{}, errProbeDone
	}
	h := New(opts)
	inst := newInstance(h, s)
	defer inst.kill()
	err := inst.probe(ctx)
	if err != nil && err != errProbeDone {
		return plugin.Info{}, nil, err
	}
	inst.mu.Lock()
	info := inst.info
	inst.mu.Unlock()
	return info, spec, nil
}

// errProbeDone stops a probe launch once the schema is known, before
// Configure.
var errProbeDone = probeDone{}

type probeDone struct{}

func (probeDone) Error() string { return "probe done" }

// probe runs launch on a locked thread, as supervise does, so the probed
// process also dies with its parent.
func (i *instance) probe(ctx context.Context) error {
	result := make(chan error, 1)
	go func() {
		// Not unlocked: the thread ends with this goroutine, after the
		// plugin was killed.
		runtime.LockOSThread()
		err := i.launch(ctx)
		i.kill()
		result <- err
	}()
	select {
	case err := <-result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(i.spec.StartTimeout + 2*callTimeout):
		return context.DeadlineExceeded
	}
}
