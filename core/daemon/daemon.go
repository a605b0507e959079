// Package daemon is the Berth daemon: it loads config.hcl, starts the
// plugins through the host, serves the core's admin socket and the core
// services brokered to plugins, and shuts everything down cleanly.
//
// Files under runtime_dir (keep it short: unix socket paths stay under 104
// bytes on macOS):
//
//	berthd.pid           pid of the daemon, flock'ed while it runs
//	admin.sock           the core's admin socket (System service), mode 0600
//	<layer>-<name>/      each plugin's runtime dir (its go-plugin socket, …)
//	api-grpc/api.sock    the public API (api-grpc's default)
//
// Under state_dir: plugins/<layer>-<name>/ for each plugin's state,
// images/ for the core's image store (core/images: blobs/sha256/, ingest/,
// tmp/, index.json), network/ for the core's network service
// (core/network: networks.db, one directory per network with its helper's
// state, pid and log), and berthd.log when the daemon runs in the background.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/core/images"
	"github.com/berth-dev/berth/core/network"
	"github.com/berth-dev/berth/internal/netdp"
	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	sdkimages "github.com/berth-dev/berth/sdk/images"
	sdknetwork "github.com/berth-dev/berth/sdk/network"
	"github.com/berth-dev/berth/sdk/plugin"
)

// File names under the runtime dir, and the image store under the state
// dir.
const (
	PidFile     = "berthd.pid"
	AdminSocket = "admin.sock"
	ImagesDir   = "images"
	NetworkDir  = "network"
)

// AdminSocketPath returns the admin socket of a daemon using cfg.
func AdminSocketPath(cfg *config.Config) string {
	return filepath.Join(cfg.Berth.RuntimeDir, AdminSocket)
}

// Options configure Run.
type Options struct {
	Config *config.Config
	Logger hclog.Logger
	// HostOptions override the host's health and backoff timings (tests).
	HealthInterval time.Duration
	RestartBackoff time.Duration
	// Ready, when set, is closed once the admin socket serves.
	Ready chan<- struct{}
	// NetworkHelper is the command of a network's helper process before
	// its "--state FILE" arguments (`berth system network-helper`). With
	// it, on Linux as root, networks get their kernel datapath and
	// helpers; without it (or elsewhere) the network service only keeps
	// its records.
	NetworkHelper []string
	// UsernetHelper is the command of a user-mode network's helper
	// (`berth system usernet-helper`), used when the network datapath is
	// "user" (config network_datapath; auto: when not root on Linux, and
	// on macOS).
	UsernetHelper []string
}

// Run runs the daemon until ctx is done or a client asks it to shut down.
func Run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	for dir, mode := range map[string]os.FileMode{cfg.Berth.StateDir: 0o711, cfg.Berth.RuntimeDir: 0o711} {
		if err := os.MkdirAll(dir, mode); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	unlock, err := lockPidFile(filepath.Join(cfg.Berth.RuntimeDir, PidFile))
	if err != nil {
		return err
	}
	defer unlock()

	specs, diags := HostSpecs(cfg)
	if diags.HasErrors() {
		return fmt.Errorf("%s", strings.TrimSpace(config.FormatDiagnostics(diags)))
	}

	imageSvc, err := images.New(images.Options{
		Root:               filepath.Join(cfg.Berth.StateDir, ImagesDir),
		Logger:             log.Named("images"),
		InsecureRegistries: cfg.Berth.InsecureRegistries,
		PullParallelism:    cfg.Berth.PullParallelism,
	})
	if err != nil {
		return err
	}

	netOpts := network.Options{
		Root:          filepath.Join(cfg.Berth.StateDir, NetworkDir),
		Logger:        log.Named("network"),
		DNSUpstreams:  cfg.Berth.DNSUpstreams,
		DefaultBridge: cfg.Berth.DefaultBridge,
	}
	if cfg.Berth.DefaultSubnet != "" {
		// Checked when the config was loaded.
		netOpts.DefaultSubnet = netip.MustParsePrefix(cfg.Berth.DefaultSubnet)
	}
	if cfg.Berth.Firewall != "" {
		// Plugins and network helpers inherit it: every process's netdp
		// uses the same firewall backend.
		if err := os.Setenv(netdp.FirewallEnv, cfg.Berth.Firewall); err != nil {
			return err
		}
	}
	datapath, err := network.ChooseDatapath(cfg.Berth.NetworkDatapath, runtime.GOOS, os.Geteuid() == 0)
	if err != nil {
		return err
	}
	switch {
	case datapath == network.DatapathKernel && len(opts.NetworkHelper) > 0:
		netOpts.Datapath = network.Kernel{}
		netOpts.HelperArgv = opts.NetworkHelper
	case datapath == network.DatapathUser && len(opts.UsernetHelper) > 0:
		netOpts.UserMode = true
		netOpts.HelperArgv = opts.UsernetHelper
	}
	log.Info("network datapath", "datapath", datapath, "setting", cfg.Berth.NetworkDatapath)
	netSvc, err := network.New(ctx, netOpts)
	if err != nil {
		return err
	}
	defer netSvc.Close()

	sys := &system{cfg: cfg, started: time.Now(), shutdown: make(chan struct{})}
	// Plugins reach the image service through a wrapper that unpacks pulls;
	// it needs the host, so it is set once the host exists (before Start).
	var imagesServed sdkimages.Service = imageSvc
	h := host.New(host.Options{
		Logger:         log,
		LogLevel:       cfg.Berth.LogLevel,
		StateDir:       cfg.Berth.StateDir,
		RuntimeDir:     cfg.Berth.RuntimeDir,
		HealthInterval: opts.HealthInterval,
		RestartBackoff: opts.RestartBackoff,
		Services: map[string]host.Service{
			plugin.HandleSystem:  func(s *grpc.Server) { api.RegisterSystemServer(s, sys) },
			plugin.HandleImages:  func(s *grpc.Server) { sdkimages.RegisterServer(s, imagesServed) },
			plugin.HandleNetwork: func(s *grpc.Server) { sdknetwork.RegisterServer(s, netSvc) },
		},
	})
	sys.host = h
	imagesServed = newUnpackingImages(imageSvc, h, cfg, log)
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		h.Stop(stopCtx)
		log.Info("plugins stopped")
	}()

	// The admin socket comes up first, so `berth system status` works while
	// plugins start.
	adminPath := AdminSocketPath(cfg)
	l, err := listenAdmin(adminPath)
	if err != nil {
		return err
	}
	defer os.Remove(adminPath)
	admin := sdk.NewGRPCServer(nil)
	api.RegisterSystemServer(admin, sys)
	healthpb.RegisterHealthServer(admin, health.NewServer())
	go func() { _ = admin.Serve(l) }()
	defer stopGracefully(admin)

	log.Info("starting plugins", "count", len(specs), "config", cfg.Filename)
	if err := h.Start(ctx, specs); err != nil {
		return err
	}
	if err := checkBindings(h.Plugins(), specs); err != nil {
		return err
	}
	log.Info("daemon ready", "pid", os.Getpid(), "admin_socket", adminPath)
	if opts.Ready != nil {
		close(opts.Ready)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx))
	case <-sys.shutdown:
		log.Info("shutting down", "reason", "requested by a client")
	}
	return nil
}

// stopGracefully lets in-flight admin calls (the Shutdown that got us here)
// finish, for at most five seconds.
func stopGracefully(s *grpc.Server) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.Stop()
	}
}

// lockPidFile takes an exclusive lock on the pid file and writes our pid,
// or reports the daemon that holds it. The returned func releases it.
func lockPidFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		_ = f.Close()
		return nil, errdefs.AlreadyExists("a berth daemon is already running (pid %s, pid file %s)", strings.TrimSpace(string(b)), path)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write pid file: %w", err)
	}
	return func() {
		_ = os.Remove(path)
		_ = f.Close()
	}, nil
}

// ReadPid returns the pid in the pid file under runtimeDir, 0 when none.
func ReadPid(runtimeDir string) int {
	b, err := os.ReadFile(filepath.Join(runtimeDir, PidFile))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func listenAdmin(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale admin socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// system is the core's System service, served on the admin socket and
// brokered to api plugins.
type system struct {
	cfg      *config.Config
	host     *host.Host
	started  time.Time
	once     sync.Once
	shutdown chan struct{}

	mu        sync.Mutex
	endpoints map[string][]api.Endpoint // last known, by api plugin name
}

var _ api.System = (*system)(nil)

func (s *system) Version(context.Context) (api.VersionInfo, error) { return version.Info(), nil }

func (s *system) Plugins(context.Context) ([]api.PluginStatus, error) { return s.host.Plugins(), nil }

func (s *system) Shutdown(context.Context) error {
	s.once.Do(func() { close(s.shutdown) })
	return nil
}

func (s *system) Status(ctx context.Context) (api.Status, error) {
	plugins := s.host.Plugins()
	return api.Status{
		Version:     version.Info(),
		Pid:         os.Getpid(),
		StartedAt:   s.started,
		ConfigFile:  s.cfg.Filename,
		StateDir:    s.cfg.Berth.StateDir,
		RuntimeDir:  s.cfg.Berth.RuntimeDir,
		AdminSocket: AdminSocketPath(s.cfg),
		Endpoints:   s.frontendEndpoints(ctx, plugins),
		Plugins:     plugins,
	}, nil
}

// frontendEndpoints asks each api plugin where it serves, remembering the
// answer so a restarting frontend still shows its last endpoints.
func (s *system) frontendEndpoints(ctx context.Context, plugins []api.PluginStatus) []api.Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endpoints == nil {
		s.endpoints = map[string][]api.Endpoint{}
	}
	var out []api.Endpoint
	for _, p := range plugins {
		if p.Layer != plugin.LayerAPI {
			continue
		}
		if c, err := s.host.Client(plugin.LayerAPI, p.Name); err == nil {
			if f, ok := c.(api.Frontend); ok {
				callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
				if es, err := f.Endpoints(callCtx); err == nil {
					s.endpoints[p.Name] = es
				}
				cancel()
			}
		}
		out = append(out, s.endpoints[p.Name]...)
	}
	return out
}
