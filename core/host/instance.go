package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// supportedAPIVersions are the layer API versions this core speaks, newest
// first.
var supportedAPIVersions = []string{plugin.APIVersion}

// callTimeout bounds each call the host makes into a plugin while launching
// and health-checking it, so a hung plugin is an error, never a hang.
const callTimeout = 10 * time.Second

// unhealthyAfter is how many failed health checks in a row make the host
// kill and restart a plugin that is alive but not answering.
const unhealthyAfter = 3

// stableAfter is how long a plugin must run for its restart backoff to reset.
const stableAfter = time.Minute

// connTarget is what a brokered handle forwards to: a plugin instance or a
// core service.
type connTarget struct {
	instance *instance
	service  Service
}

// instance supervises one configured plugin across restarts.
type instance struct {
	host *Host
	spec Spec
	log  hclog.Logger

	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{}

	mu        sync.Mutex
	client    *goplugin.Client
	typed     plugin.Client
	info      plugin.Info
	health    string
	pid       int
	restarts  int
	lastErr   string
	startedAt time.Time
	handles   map[string]connTarget
}

func newInstance(h *Host, s Spec) *instance {
	return &instance{
		host:   h,
		spec:   s,
		log:    h.log.Named(string(s.Layer)+"-"+s.Name).With("plugin", s.ID()),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
		health: api.HealthStarting,
	}
}

// start runs the supervisor and returns the result of the first launch. A
// plugin that fails its first launch is not retried: its error (bad
// checksum, wrong protocol, no handshake in time, bad config) will not fix
// itself, and the daemon reports it.
func (i *instance) start(ctx context.Context) error {
	first := make(chan error, 1)
	go i.supervise(ctx, first)
	return <-first
}

// supervise launches the plugin and relaunches it until stop. It runs on a
// locked OS thread that is never unlocked: the plugin processes it forks
// carry Pdeathsig, which the kernel sends when the forking thread exits, so
// the thread must live as long as the plugin should.
func (i *instance) supervise(ctx context.Context, first chan<- error) {
	runtime.LockOSThread()
	defer close(i.done)

	backoff := i.host.opts.RestartBackoff
	err := i.launch(ctx)
	if err != nil {
		i.kill()
		i.setFailed(err)
		first <- err
		return
	}
	first <- nil
	for {
		ranFrom := time.Now()
		reason := i.monitor()
		if reason == nil { // stop requested
			i.kill()
			i.setHealth(api.HealthStopped)
			return
		}
		i.log.Error("plugin went away; restarting", "reason", reason, "backoff", backoff)
		i.kill(true)
		i.mu.Lock()
		i.health, i.lastErr, i.pid = api.HealthRestarting, reason.Error(), 0
		i.mu.Unlock()
		i.notifyDependents(false, reason.Error())
		if time.Since(ranFrom) > stableAfter {
			backoff = i.host.opts.RestartBackoff
		}
		for {
			if !i.sleep(backoff) {
				i.setHealth(api.HealthStopped)
				return
			}
			backoff = min(backoff*2, i.host.opts.MaxRestartBackoff)
			i.mu.Lock()
			i.restarts++
			i.mu.Unlock()
			err := i.launch(context.Background())
			if err == nil {
				break
			}
			i.log.Error("plugin restart failed", "error", err, "backoff", backoff)
			i.kill()
			i.mu.Lock()
			i.lastErr = err.Error()
			i.mu.Unlock()
		}
		i.log.Info("plugin restarted", "pid", i.status().Pid)
		i.notifyDependents(true, "restarted")
	}
}

// sleep waits d, or returns false at once when the instance is stopped.
func (i *instance) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-i.stopCh:
		return false
	}
}

// monitor blocks until the plugin exits, stops answering health checks, or
// the instance is stopped (then it returns nil).
func (i *instance) monitor() error {
	i.mu.Lock()
	typed := i.typed
	i.mu.Unlock()
	health := healthpb.NewHealthClient(typed.Conn())
	ticker := time.NewTicker(i.host.opts.HealthInterval)
	defer ticker.Stop()
	failures := 0
	for {
		select {
		case <-i.stopCh:
			return nil
		case <-typed.Done():
			return errors.New("plugin process exited")
		case <-ticker.C:
			ctx, cancel := context.WithTimeout(context.Background(), i.host.opts.HealthInterval)
			_, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
			cancel()
			if err == nil {
				failures = 0
				i.setHealth(api.HealthHealthy)
				continue
			}
			failures++
			i.log.Warn("plugin health check failed", "error", err, "failures", failures)
			i.setHealth(api.HealthUnhealthy)
			if failures >= unhealthyAfter {
				return fmt.Errorf("plugin failed %d health checks in a row: %v", failures, err)
			}
		}
	}
}

// launch starts the plugin process, checks it and configures it.
func (i *instance) launch(ctx context.Context) (err error) {
	s := i.spec
	stateDir, runtimeDir, err := i.host.pluginDirs(s)
	if err != nil {
		return err
	}
	if _, err := os.Stat(s.Path); err != nil {
		return errdefs.NotFound("plugin %s: binary %s: %v", s.ID(), s.Path, err)
	}
	cmd := exec.Command(s.Path)
	cmd.Env = append(os.Environ(),
		sdk.LogLevelEnv+"="+i.host.opts.LogLevel,
		goplugin.EnvUnixSocketDir+"="+runtimeDir,
	)
	cmd.SysProcAttr = dieWithParent()
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  plugin.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{plugin.ProtocolVersion: sdk.ClientPlugins()},
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           i.log,
		StartTimeout:     s.StartTimeout,
		GRPCDialOptions:  errdefs.DialOptions(),
		SyncStdout:       i.log.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Info}),
		SyncStderr:       i.log.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	}
	if s.SHA256 != nil {
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: s.SHA256, Hash: sha256.New()}
	}
	client := goplugin.NewClient(cfg)
	i.mu.Lock()
	i.client = client
	i.mu.Unlock()

	rpc, err := client.Client()
	if err != nil {
		return i.launchError(err, client.Exited())
	}
	raw, err := rpc.Dispense(string(s.Layer))
	if err != nil {
		return fmt.Errorf("plugin %s: %w", s.ID(), err)
	}
	typed, ok := raw.(plugin.Client)
	if !ok {
		return fmt.Errorf("plugin %s: dispensed %T, not a Berth plugin client", s.ID(), raw)
	}

	callCtx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	info, err := typed.Info(callCtx)
	if err != nil {
		return fmt.Errorf("plugin %s: Info: %w", s.ID(), err)
	}
	i.mu.Lock()
	i.info = info
	i.mu.Unlock()
	if info.Layer != s.Layer {
		return errdefs.InvalidArgument("plugin %s: binary %s is a %q plugin, not %q", s.ID(), s.Path, info.Layer, s.Layer)
	}
	apiVersion, err := negotiateAPIVersion(info.APIVersions)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", s.ID(), err)
	}
	config := schema.Config{}
	if s.DecodeConfig != nil {
		spec, err := typed.ConfigSchema(callCtx)
		if err != nil {
			return fmt.Errorf("plugin %s: ConfigSchema: %w", s.ID(), err)
		}
		if config, err = s.DecodeConfig(spec); err != nil {
			return err
		}
	}

	targets := i.host.handlesFor(s)
	ids := map[string]uint32{}
	handleInfo := map[string]plugin.HandleInfo{}
	broker := typed.Broker()
	for name, t := range targets {
		id := broker.NextId()
		go broker.AcceptAndServe(id, i.host.serverFor(name, t))
		ids[name] = id
		if t.instance != nil {
			handleInfo[name] = t.instance.handleInfo()
		}
	}
	req := plugin.ConfigureRequest{Config: config, APIVersion: apiVersion, StateDir: stateDir, RuntimeDir: runtimeDir}
	if err := typed.ConfigureWithHandles(callCtx, req, ids, handleInfo); err != nil {
		return fmt.Errorf("plugin %s: Configure: %w", s.ID(), err)
	}

	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	i.mu.Lock()
	i.typed, i.handles = typed, targets
	i.health, i.pid, i.startedAt = api.HealthHealthy, pid, time.Now()
	i.mu.Unlock()
	i.log.Info("plugin started", "pid", pid, "version", info.Version, "api_version", apiVersion, "handles", len(ids))
	return nil
}

// launchError turns go-plugin's start errors into messages a user can act on.
func (i *instance) launchError(err error, exited bool) error {
	s := i.spec
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		return errdefs.InvalidArgument("plugin %s: binary %s does not match the sha256 in config.hcl; rebuild it or update the checksum", s.ID(), s.Path)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return errdefs.Unavailable("plugin %s: %s did not complete its handshake within %s (start_timeout)", s.ID(), s.Path, s.StartTimeout)
	case strings.Contains(msg, "incompatible api version"), strings.Contains(msg, "incompatible core api version"), strings.Contains(msg, "unsupported plugin protocol"):
		return errdefs.InvalidArgument("plugin %s: %s speaks another plugin protocol (this Berth speaks version %d): %v", s.ID(), s.Path, plugin.ProtocolVersion, err)
	case exited, strings.Contains(msg, "plugin exited before we could connect"),
		strings.Contains(msg, "failed to read any lines from plugin's stdout"):
		return errdefs.Unavailable("plugin %s: %s exited during its handshake; see the daemon log for its output", s.ID(), s.Path)
	case strings.Contains(msg, "unrecognized remote plugin message"):
		return errdefs.InvalidArgument("plugin %s: %s is not a Berth plugin (its first output was not a plugin handshake): %v", s.ID(), s.Path, err)
	}
	return fmt.Errorf("plugin %s: start %s: %w", s.ID(), s.Path, err)
}

func negotiateAPIVersion(offered []string) (string, error) {
	for _, v := range supportedAPIVersions {
		if slices.Contains(offered, v) {
			return v, nil
		}
	}
	return "", errdefs.InvalidArgument("plugin supports API versions %v; this Berth supports %v", offered, supportedAPIVersions)
}

// gracefulStop bounds go-plugin's graceful shutdown of a plugin, whose
// Shutdown call has no deadline of its own: a frozen plugin would block it.
const gracefulStop = 5 * time.Second

// kill stops the current plugin process, if any: gracefully (go-plugin's
// Shutdown, then its own kill after two seconds), and with SIGKILL when that
// does not finish in gracefulStop — or at once when force is set.
func (i *instance) kill(force ...bool) {
	i.mu.Lock()
	client, pid := i.client, i.pid
	i.client, i.typed = nil, nil
	i.mu.Unlock()
	if client == nil {
		return
	}
	if pid == 0 {
		if rc := client.ReattachConfig(); rc != nil {
			pid = rc.Pid
		}
	}
	if len(force) > 0 && force[0] && pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	done := make(chan struct{})
	go func() {
		client.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(gracefulStop):
		if pid > 0 {
			i.log.Warn("plugin did not stop gracefully; killing it", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		<-done
	}
}

// stop ends supervision and waits for the plugin to exit.
func (i *instance) stop(ctx context.Context) {
	i.stopOnce.Do(func() { close(i.stopCh) })
	select {
	case <-i.done:
	case <-ctx.Done():
		i.kill()
	}
}

func (i *instance) liveClient() (plugin.Client, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.typed == nil || i.health == api.HealthRestarting || i.health == api.HealthFailed {
		return nil, errdefs.Unavailable("plugin %s is %s", i.spec.ID(), i.health)
	}
	return i.typed, nil
}

func (i *instance) handleTargets() map[string]connTarget {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.handles
}

// notifyDependents tells every plugin holding a handle to i that it went
// away or came back.
func (i *instance) notifyDependents(available bool, reason string) {
	for dep, handle := range i.host.dependents(i) {
		c, err := dep.liveClient()
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		c.HandleChanged(ctx, plugin.HandleChange{Handle: handle, Available: available, Reason: reason})
		cancel()
	}
}

// handleInfo describes this plugin to the plugins given a handle to it.
func (i *instance) handleInfo() plugin.HandleInfo {
	i.mu.Lock()
	defer i.mu.Unlock()
	return plugin.HandleInfo{
		Layer:        i.spec.Layer,
		Name:         i.spec.Name,
		Default:      i.spec.Default,
		Snapshotter:  i.spec.Snapshotter,
		Capabilities: i.info.Capabilities,
	}
}

func (i *instance) setHealth(h string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.health = h
}

func (i *instance) setFailed(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.health, i.lastErr, i.pid = api.HealthFailed, err.Error(), 0
}

func (i *instance) status() api.PluginStatus {
	i.mu.Lock()
	defer i.mu.Unlock()
	return api.PluginStatus{
		Layer:        i.spec.Layer,
		Name:         i.spec.Name,
		Version:      i.info.Version,
		Platform:     i.info.Platform(),
		Pid:          i.pid,
		Health:       i.health,
		Path:         i.spec.Path,
		Restarts:     i.restarts,
		LastError:    i.lastErr,
		Default:      i.spec.Default,
		Capabilities: i.info.Capabilities,
		StartedAt:    i.startedAt,
	}
}

// serverFor returns the gRPC server behind handle name.
func (h *Host) serverFor(name string, t connTarget) func([]grpc.ServerOption) *grpc.Server {
	if t.service != nil {
		return func(opts []grpc.ServerOption) *grpc.Server {
			s := sdk.NewGRPCServer(opts)
			t.service(s)
			return s
		}
	}
	return newForwardingServer(func() (*grpc.ClientConn, error) {
		c, err := t.instance.liveClient()
		if err != nil {
			return nil, errdefs.Unavailable("handle %q: %v", name, err)
		}
		return c.Conn(), nil
	})
}
