package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/hypervisor/qemu/qmp"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// stateFile is the migration stream's name inside a checkpoint dir.
const stateFile = "state"

// vm is one qemu process.
type vm struct {
	d   *driver
	cfg hypervisor.Config
	log hclog.Logger
	pid int
	qmp *qmp.Client

	done    chan struct{} // closed once qemu is reaped and its sockets removed
	exitErr error         // set before done closes
	killed  atomic.Bool   // Kill or Shutdown ended it: exit is not an error

	saveMu sync.Mutex // one Save at a time
}

var _ hypervisor.Machine = (*vm)(nil)

// launch starts qemu for cfg and connects QMP. With incoming the VM waits
// for migrate-incoming. On error nothing is left running.
func (d *driver) launch(ctx context.Context, cfg hypervisor.Config, incoming bool) (*vm, error) {
	for _, s := range []string{qmpSocket, agentSocket} {
		if err := os.Remove(filepath.Join(cfg.RunDir, s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("start qemu: stale socket: %w", err)
		}
	}
	errf, err := os.OpenFile(filepath.Join(cfg.RunDir, stderrLog), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	args := d.m.args(cfg, incoming)
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = errf, errf
	cmd.SysProcAttr = procAttr()
	m := &vm{d: d, cfg: cfg, log: d.log, done: make(chan struct{})}

	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking thread exits, so this goroutine
		// keeps its thread locked until qemu is reaped (and then lets the
		// thread go with it).
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		m.pid = cmd.Process.Pid
		m.log = d.log.With("pid", m.pid)
		started <- nil
		m.reaped(cmd.Wait())
	}()
	err = <-started
	errf.Close()
	if err != nil {
		return nil, fmt.Errorf("start qemu %s: %w", d.bin, err)
	}
	m.log.Debug("qemu started", "args", strings.Join(args, " "))

	c, err := m.dialQMP(ctx)
	if err != nil {
		m.Kill()
		<-m.done
		if m.exitErr != nil {
			return nil, fmt.Errorf("start qemu: %w", m.exitErr)
		}
		return nil, fmt.Errorf("start qemu: %w%s", err, m.stderrSuffix())
	}
	m.qmp = c
	go func() { <-m.done; c.Close() }()
	return m, nil
}

// dialQMP connects to qemu's QMP socket, retrying while qemu starts.
func (m *vm) dialQMP(ctx context.Context) (*qmp.Client, error) {
	path := filepath.Join(m.cfg.RunDir, qmpSocket)
	delay := 2 * time.Millisecond
	for {
		c, err := qmp.Dial(ctx, path)
		if err == nil {
			return c, nil
		}
		select {
		case <-m.done:
			return nil, errors.New("qemu exited before QMP answered")
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// reaped records qemu's end and removes its sockets.
func (m *vm) reaped(werr error) {
	switch {
	case m.killed.Load():
	case werr == nil:
		m.log.Debug("qemu exited")
	default:
		m.exitErr = fmt.Errorf("qemu exited (%v)%s", werr, m.stderrSuffix())
		m.log.Error("qemu failed", "error", m.exitErr)
	}
	for _, s := range []string{qmpSocket, agentSocket} {
		os.Remove(filepath.Join(m.cfg.RunDir, s))
	}
	close(m.done)
}

// stderrSuffix is ": " and the last lines qemu wrote to its log, or "".
func (m *vm) stderrSuffix() string {
	f, err := os.Open(filepath.Join(m.cfg.RunDir, stderrLog))
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 4096 {
		f.Seek(-4096, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return ": " + strings.Join(lines[max(0, len(lines)-5):], "; ")
}

func (m *vm) exited() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// run executes a QMP command, reporting hypervisor.ErrExited (with qemu's
// last words) once qemu is gone.
func (m *vm) run(ctx context.Context, cmd string, args, out any) error {
	if m.exited() {
		return m.gone()
	}
	err := m.qmp.Run(ctx, cmd, args, out)
	var qe *qmp.Error
	if err != nil && !errors.As(err, &qe) && ctx.Err() == nil {
		// The connection broke: qemu is most likely exiting; let it be reaped.
		select {
		case <-m.done:
			return m.gone()
		case <-time.After(time.Second):
		}
	}
	return err
}

// gone is the error for calls after qemu ended.
func (m *vm) gone() error {
	<-m.done
	if m.exitErr != nil {
		return fmt.Errorf("%w: %v", hypervisor.ErrExited, m.exitErr)
	}
	return hypervisor.ErrExited
}

func (m *vm) Pid() int { return m.pid }

func (m *vm) DialAgent(ctx context.Context) (net.Conn, error) {
	path := filepath.Join(m.cfg.RunDir, agentSocket)
	var d net.Dialer
	return hypervisor.DialRetry(ctx, func(ctx context.Context) (net.Conn, error) {
		if m.exited() {
			return nil, m.gone()
		}
		return d.DialContext(ctx, "unix", path)
	}, func(err error) bool { return errors.Is(err, hypervisor.ErrExited) })
}

func (m *vm) Pause(ctx context.Context) error {
	if err := m.run(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("pause vm: %w", err)
	}
	return nil
}

func (m *vm) Resume(ctx context.Context) error {
	if err := m.run(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resume vm: %w", err)
	}
	return nil
}

// status is qemu's run state ("running", "paused", "postmigrate", …).
func (m *vm) status(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	err := m.run(ctx, "query-status", nil, &st)
	return st.Status, err
}

func (m *vm) SetBalloon(ctx context.Context, guestBytes int64) error {
	if !m.cfg.Balloon {
		return errdefs.NotImplemented("balloon: the VM was started without one")
	}
	if guestBytes < hypervisor.MinMemory || guestBytes > m.cfg.MemoryBytes {
		return errdefs.InvalidArgument("balloon target %d bytes: want %d..%d", guestBytes, hypervisor.MinMemory, m.cfg.MemoryBytes)
	}
	if err := m.run(ctx, "balloon", map[string]any{"value": guestBytes}, nil); err != nil {
		return fmt.Errorf("set balloon: %w", err)
	}
	return nil
}

// balloonActual is the guest RAM the balloon currently leaves the guest.
func (m *vm) balloonActual(ctx context.Context) (int64, error) {
	var b struct {
		Actual int64 `json:"actual"`
	}
	err := m.run(ctx, "query-balloon", nil, &b)
	return b.Actual, err
}

// Save stops the VM and migrates it into dir/state through "exec:cat"
// (qemu 7.2 has no file: URI), then writes dir/machine.json.
func (m *vm) Save(ctx context.Context, dir string) (err error) {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	defer func() {
		if err != nil {
			err = fmt.Errorf("save vm to %s: %w", dir, err)
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := m.run(ctx, "stop", nil, nil); err != nil {
		return err
	}
	// The default 128 MiB/s cap would make a plain save take seconds.
	if err := m.run(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return err
	}
	if err := m.setIgnoreShared(ctx, m.cfg.MemoryFile != "" && !m.cfg.MemoryPrivate); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+stateFile+".tmp")
	os.Remove(tmp)
	defer os.Remove(tmp)
	if err := m.run(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(tmp)}, nil); err != nil {
		return err
	}
	if err := m.waitMigration(ctx); err != nil {
		if ctx.Err() != nil {
			m.run(context.Background(), "migrate_cancel", nil, nil)
		}
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return err
	}
	ver := m.qmp.Version().String()
	return hypervisor.WriteCheckpoint(dir, hypervisor.NewCheckpoint(m.d.Platform(), m.cfg, stateFile, "qemu "+ver))
}

func (m *vm) setIgnoreShared(ctx context.Context, on bool) error {
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": on}}
	return m.run(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil)
}

// waitMigration polls query-migrate until the migration completed or failed.
func (m *vm) waitMigration(ctx context.Context) error {
	delay := time.Millisecond
	for {
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		if err := m.run(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			if st.Error == "" {
				st.Error = "migration " + st.Status
			}
			return errors.New(st.Error)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			return m.gone()
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// incoming loads the checkpoint in dir into a VM started with -incoming
// defer and resumes it.
func (m *vm) incoming(ctx context.Context, dir string, ck hypervisor.Checkpoint) error {
	if err := m.setIgnoreShared(ctx, ck.SharedRAM); err != nil {
		return err
	}
	uri := "exec:cat " + shellQuote(filepath.Join(dir, ck.State))
	if err := m.run(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return err
	}
	if err := m.waitMigration(ctx); err != nil {
		return err
	}
	return m.run(ctx, "cont", nil, nil)
}

// Shutdown powers the guest off through ACPI (the guest needs the button
// module). A VM that is not running cannot act on it and is killed.
func (m *vm) Shutdown(ctx context.Context) error {
	if m.exited() {
		return nil
	}
	st, err := m.status(ctx)
	if err == nil && st == "running" {
		err = m.run(ctx, "system_powerdown", nil, nil)
	} else if err == nil {
		m.log.Debug("vm not running; killing instead of powering off", "status", st)
		return m.killWait()
	}
	if errors.Is(err, hypervisor.ErrExited) {
		return nil
	}
	if err != nil {
		m.killWait()
		return fmt.Errorf("shutdown vm: %w", err)
	}
	select {
	case <-m.done:
		return nil
	case <-ctx.Done():
		m.killWait()
		return fmt.Errorf("shutdown vm: guest did not power off: %w", ctx.Err())
	}
}

func (m *vm) killWait() error {
	m.Kill()
	<-m.done
	return nil
}

// Kill SIGKILLs qemu's process group.
func (m *vm) Kill() error {
	if m.exited() {
		return nil
	}
	m.killed.Store(true)
	if err := syscall.Kill(-m.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill qemu %d: %w", m.pid, err)
	}
	return nil
}

func (m *vm) Wait() error {
	<-m.done
	return m.exitErr
}
