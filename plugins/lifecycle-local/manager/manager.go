// Package manager is lifecycle-local's lifecycle.Manager: containers as a
// state machine persisted in a bbolt store, driving the image service,
// snapshotters, resources and isolation through the handles the core
// brokers.
//
// Invariants:
//   - Every transition is written to the store before the call that made
//     it returns, and every layer call that changes something is undone
//     when a later step of the same operation fails (a failed Create leaves
//     no snapshot, group, task or record).
//   - Operations on one container are serialised by a per-container lock;
//     operations on different containers run in parallel.
//   - Exits are observed through isolation Wait (one watcher per running
//     container) and isolation Events; both feed one idempotent path that
//     matches an exit to the run it ends (Record.Run), so neither a
//     duplicate nor a late exit changes a newer run.
//   - At Configure, and whenever an isolation plugin comes back, records are
//     reconciled with what the isolation plugin recovers: containers that
//     died meanwhile are stopped with their real exit code, running ones
//     stay running and are watched again, half-created ones are undone,
//     and tasks no record knows are removed.
package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// Settings are the plugin's block of config.hcl.
type Settings struct {
	// StoreTimeout bounds the wait for the store's lock.
	StoreTimeout time.Duration
	// StopTimeout is the grace period of a stop when neither the request
	// nor the container sets one (Docker's 10s).
	StopTimeout time.Duration
	// RestartBackoff is the first delay before a restart policy restarts a
	// container, doubled for each restart that follows quickly, up to
	// MaxRestartBackoff; a container that ran RestartResetAfter resets it.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	RestartResetAfter time.Duration
}

// DefaultSettings are Docker's choices.
func DefaultSettings() Settings {
	return Settings{
		StoreTimeout:      store.DefaultTimeout,
		StopTimeout:       10 * time.Second,
		RestartBackoff:    100 * time.Millisecond,
		MaxRestartBackoff: time.Minute,
		RestartResetAfter: 10 * time.Second,
	}
}

// Manager implements lifecycle.Manager.
type Manager struct {
	log hclog.Logger
	// fixedLayers, when set (tests), replaces the brokered handles.
	fixedLayers Layers

	ctx    context.Context // the plugin's lifetime: watchers and timers
	cancel context.CancelFunc
	events *broadcaster

	mu         sync.Mutex
	configured bool
	settings   Settings
	layers     Layers
	store      *store.Store
	stateDir   string
	locks      map[string]*sync.Mutex
	timers     map[string]*time.Timer // pending restarts by container id
	backoff    map[string]time.Duration
	watchers   map[string]subscription // Wait watchers by container id
	eventSubs  map[string]subscription // event streams by handle
	nextToken  int
	// volMu serialises volume creation, removal and filling (volumes.go).
	volMu sync.Mutex
}

var (
	_ lifecycle.Manager    = (*Manager)(nil)
	_ plugin.HandleWatcher = (*Manager)(nil)
)

// New returns a Manager that drives the handles Configure gives it.
func New(log hclog.Logger) *Manager { return newManager(log, nil) }

// NewWithLayers returns a Manager that drives layers instead of the
// brokered handles (tests, embedding).
func NewWithLayers(log hclog.Logger, layers Layers) *Manager { return newManager(log, layers) }

func newManager(log hclog.Logger, layers Layers) *Manager {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		log: log, fixedLayers: layers, ctx: ctx, cancel: cancel,
		events:    newBroadcaster(log),
		settings:  DefaultSettings(),
		locks:     map[string]*sync.Mutex{},
		timers:    map[string]*time.Timer{},
		backoff:   map[string]time.Duration{},
		watchers:  map[string]subscription{},
		eventSubs: map[string]subscription{},
	}
}

// Info implements plugin.Base.
func (m *Manager) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerLifecycle, "local", version.Version,
		lifecycle.CapRestartPolicies, lifecycle.CapCheckpoint, lifecycle.CapReconcile, lifecycle.CapEvents), nil
}

// ConfigSchema implements plugin.Base.
func (m *Manager) ConfigSchema(context.Context) (*schema.Spec, error) {
	d := DefaultSettings()
	lit := func(v time.Duration) *schema.Spec { return schema.Literal(fmt.Sprintf("%q", v.String())) }
	return schema.Object(map[string]*schema.Spec{
		"store_timeout":       schema.Default(schema.Attr("store_timeout", "string", false), lit(d.StoreTimeout)),
		"stop_timeout":        schema.Default(schema.Attr("stop_timeout", "string", false), lit(d.StopTimeout)),
		"restart_backoff":     schema.Default(schema.Attr("restart_backoff", "string", false), lit(d.RestartBackoff)),
		"max_restart_backoff": schema.Default(schema.Attr("max_restart_backoff", "string", false), lit(d.MaxRestartBackoff)),
	}), nil
}

// settingsJSON is the plugin's block as the core sends it; unset keys
// are null.
type settingsJSON struct {
	StoreTimeout      *string `json:"store_timeout"`
	StopTimeout       *string `json:"stop_timeout"`
	RestartBackoff    *string `json:"restart_backoff"`
	MaxRestartBackoff *string `json:"max_restart_backoff"`
}

// decodeSettings reads the plugin's config, keeping defaults for what is
// unset.
func decodeSettings(cfg schema.Config) (Settings, error) {
	var raw settingsJSON
	s := DefaultSettings()
	if err := cfg.Decode(&raw); err != nil {
		return s, errdefs.InvalidArgument("lifecycle local config: %v", err)
	}
	for _, f := range []struct {
		name string
		v    *string
		dst  *time.Duration
	}{
		{"store_timeout", raw.StoreTimeout, &s.StoreTimeout},
		{"stop_timeout", raw.StopTimeout, &s.StopTimeout},
		{"restart_backoff", raw.RestartBackoff, &s.RestartBackoff},
		{"max_restart_backoff", raw.MaxRestartBackoff, &s.MaxRestartBackoff},
	} {
		if f.v == nil || *f.v == "" {
			continue
		}
		d, err := time.ParseDuration(*f.v)
		if err != nil || d < 0 {
			return s, errdefs.InvalidArgument("lifecycle local config: %s = %q is not a duration like \"10s\"", f.name, *f.v)
		}
		*f.dst = d
	}
	return s, nil
}

// Configure opens the store (once), takes the handles and reconciles the
// records with what every isolation plugin reports. Calling it again keeps
// the store and reconciles again.
func (m *Manager) Configure(ctx context.Context, req plugin.ConfigureRequest) error {
	settings, err := decodeSettings(req.Config)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if m.store == nil {
		st, err := store.Open(req.StateDir, store.Options{Timeout: settings.StoreTimeout})
		if err != nil {
			m.mu.Unlock()
			return err
		}
		m.store = st
	} else if m.stateDir != req.StateDir {
		m.mu.Unlock()
		return errdefs.InvalidArgument("lifecycle local: state dir cannot change from %s to %s while running", m.stateDir, req.StateDir)
	}
	if m.stateDir == "" { // this process's first Configure: the daemon's start
		m.stateDir = req.StateDir
		m.cleanupLeftovers()
		m.rearmAlways(m.store)
	}
	m.stateDir = req.StateDir
	m.settings = settings
	if m.fixedLayers != nil {
		m.layers = m.fixedLayers
	} else {
		m.layers = newHandleLayers(req.Handles)
	}
	m.configured = true
	m.mu.Unlock()

	for _, mode := range m.layers.Modes() {
		if err := m.reconcile(ctx, mode.Name); err != nil {
			// The isolation plugin may be restarting: it is reconciled
			// again when its handle comes back.
			m.log.Warn("reconcile failed; will retry when the isolation plugin is available", "mode", mode.Name, "error", err)
		}
	}
	m.watchResourceEvents()
	if err := m.sweepEndpoints(ctx); err != nil {
		m.log.Warn("sweep network endpoints of unknown containers", "error", err)
	}
	return nil
}

// HandleChanged reconciles an isolation mode whose plugin came back, and
// resubscribes to the events of a returning plugin.
func (m *Manager) HandleChanged(_ context.Context, c plugin.HandleChange) {
	m.log.Info("handle changed", "handle", c.Handle, "available", c.Available, "reason", c.Reason)
	if !c.Available {
		return
	}
	if mode, ok := strings.CutPrefix(c.Handle, plugin.HandleIsolationPrefix); ok {
		// The old stream may not have noticed the restart yet.
		m.watchEvents(mode, true)
		go func() {
			ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
			defer cancel()
			if err := m.reconcile(ctx, mode); err != nil {
				m.log.Error("reconcile after the isolation plugin came back", "mode", mode, "error", err)
			}
		}()
	}
	if c.Handle == plugin.HandleResources {
		m.watchResourceEvents()
	}
}

// Close stops watchers and timers and closes the store. Containers keep
// running (their supervisors own them).
func (m *Manager) Close() error {
	m.cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range m.timers {
		t.Stop()
		delete(m.timers, id)
	}
	if m.store == nil {
		return nil
	}
	err := m.store.Close()
	m.store = nil
	return err
}

// env returns the store and layers, or ErrUnavailable before Configure.
func (m *Manager) env() (*store.Store, Layers, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.configured || m.store == nil {
		return nil, nil, errdefs.Unavailable("lifecycle local is not configured yet")
	}
	return m.store, m.layers, nil
}

// lock locks container id and returns the unlock.
func (m *Manager) lock(id string) func() {
	m.mu.Lock()
	l, ok := m.locks[id]
	if !ok {
		l = &sync.Mutex{}
		m.locks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// acquire resolves ref and locks the container, returning its current
// record. Records of unfinished creates are invisible.
func (m *Manager) acquire(ref string) (store.Record, func(), error) {
	st, _, err := m.env()
	if err != nil {
		return store.Record{}, nil, err
	}
	rec, err := st.Lookup(ref)
	if err != nil {
		return store.Record{}, nil, err
	}
	unlock := m.lock(rec.Container.ID)
	rec, err = st.Get(rec.Container.ID)
	if err == nil && rec.Creating {
		err = errdefs.NotFound("no such container: %s (it is still being created)", ref)
	}
	if err != nil {
		unlock()
		return store.Record{}, nil, err
	}
	return rec, unlock, nil
}

// update writes fn's change to the record of id and returns it.
func (m *Manager) update(id string, fn func(*store.Record)) (store.Record, error) {
	st, _, err := m.env()
	if err != nil {
		return store.Record{}, err
	}
	return st.Update(id, func(r *store.Record) error { fn(r); return nil })
}

func (m *Manager) emit(kind string, rec store.Record, attrs map[string]string) {
	e := lifecycle.Event{Kind: kind, ContainerID: rec.Container.ID, Name: rec.Container.Name, Time: time.Now().UTC(), Attributes: attrs}
	if kind == lifecycle.EventExit {
		e.ExitCode = rec.Container.ExitCode
	}
	m.events.publish(e)
}

// newID returns a container ID: 64 hex digits, never all digits (so a
// short prefix is never mistaken for a number).
func newID() string {
	for {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		id := hex.EncodeToString(b)
		if strings.ContainsAny(id[:12], "abcdef") {
			return id
		}
	}
}

// IsContainerID reports whether s looks like an ID newID makes.
func IsContainerID(s string) bool { return idPattern.MatchString(s) }

var (
	idPattern   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	namePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
)

// checkName validates a user-chosen name as Docker does.
func checkName(name string) error {
	if !namePattern.MatchString(name) {
		return errdefs.InvalidArgument("invalid container name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	if IsContainerID(name) {
		return errdefs.InvalidArgument("invalid container name %q: a name cannot look like a container id", name)
	}
	return nil
}

// logPath is where the task's output goes.
func (m *Manager) logPath(id string) string {
	return filepath.Join(m.stateDir, "logs", id+".log")
}

// bootLogPath is where a mode that boots a kernel writes its console
// (isolation.AnnotationBootLog): <state dir>/logs/<id>.boot.log, the layout
// the api plugin's Logs(boot) reads.
func (m *Manager) bootLogPath(id string) string {
	return filepath.Join(m.stateDir, "logs", id+".boot.log")
}

func (m *Manager) checkpointDir(id string) string {
	return filepath.Join(m.stateDir, "checkpoints", id)
}
