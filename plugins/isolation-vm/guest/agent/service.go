//go:build linux

package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/berth-dev/berth/internal/tasklog"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/internal/vmagent/agentpb"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// service is the gRPC face of the Agent.
type service struct {
	agentpb.UnimplementedAgentServer
	a *Agent
}

var empty = &agentpb.Empty{}

func (s *service) Info(context.Context, *agentpb.InfoRequest) (*agentpb.InfoResponse, error) {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	mode := "v1"
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		mode = "v2"
	}
	out := &agentpb.InfoResponse{Version: vmagent.Version, KernelRelease: unix.ByteSliceToString(uts.Release[:]),
		UptimeNanos: ts.Nano(), Pid1: os.Getpid() == 1, CgroupMode: mode, ModulesLoaded: s.a.cfg.Modules,
		TimeUnixNanos: time.Now().UnixNano()}
	out.MemTotalBytes = kbField("/proc/meminfo", "MemTotal:")
	out.MemAvailableBytes = kbField("/proc/meminfo", "MemAvailable:")
	out.AgentRssBytes = kbField("/proc/self/status", "VmRSS:")
	return out, nil
}

// kbField reads a "Key:   N kB" line of a /proc file, in bytes.
func kbField(file, key string) uint64 {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

func (s *service) SyncClock(_ context.Context, r *agentpb.SyncClockRequest) (*agentpb.Empty, error) {
	if r.UnixNanos <= 0 {
		return nil, errdefs.InvalidArgument("clock time %d is not a Unix time in nanoseconds", r.UnixNanos)
	}
	return empty, s.a.cfg.System.SetClock(time.Unix(0, r.UnixNanos))
}

func (s *service) AddEntropy(_ context.Context, r *agentpb.AddEntropyRequest) (*agentpb.Empty, error) {
	if len(r.Data) == 0 || len(r.Data) > 4096 {
		return nil, errdefs.InvalidArgument("entropy of %d bytes: give 1 to 4096", len(r.Data))
	}
	return empty, s.a.cfg.System.AddEntropy(r.Data)
}

func (s *service) SetHostname(_ context.Context, r *agentpb.SetHostnameRequest) (*agentpb.Empty, error) {
	if r.Hostname == "" || len(r.Hostname) > 64 || strings.ContainsAny(r.Hostname, "/ \x00\n") {
		return nil, errdefs.InvalidArgument("hostname %q is not valid", r.Hostname)
	}
	return empty, s.a.cfg.System.SetHostname(r.Hostname, r.MachineId)
}

func (s *service) CreateContainer(ctx context.Context, r *agentpb.CreateContainerRequest) (*agentpb.PidResponse, error) {
	var spec specs.Spec
	if err := json.Unmarshal(r.SpecJson, &spec); err != nil {
		return nil, errdefs.InvalidArgument("container %s: spec: %v", r.Id, err)
	}
	pid, err := s.a.create(ctx, r, &spec)
	if err != nil {
		return nil, err
	}
	return &agentpb.PidResponse{Pid: int64(pid)}, nil
}

func (s *service) Start(_ context.Context, r *agentpb.StartRequest) (*agentpb.PidResponse, error) {
	pid, err := s.a.start(r.Id)
	if err != nil {
		return nil, err
	}
	return &agentpb.PidResponse{Pid: int64(pid)}, nil
}

func (s *service) Exec(_ context.Context, r *agentpb.ExecRequest) (*agentpb.PidResponse, error) {
	var p specs.Process
	if err := json.Unmarshal(r.ProcessJson, &p); err != nil {
		return nil, errdefs.InvalidArgument("exec %s: process: %v", r.ExecId, err)
	}
	pid, err := s.a.exec(r.Id, r.ExecId, &p)
	if err != nil {
		return nil, err
	}
	return &agentpb.PidResponse{Pid: int64(pid)}, nil
}

func (s *service) Signal(_ context.Context, r *agentpb.SignalRequest) (*agentpb.Empty, error) {
	if r.Signal <= 0 || r.Signal > 64 {
		return nil, errdefs.InvalidArgument("signal %d is not a signal number", r.Signal)
	}
	return empty, s.a.signal(r.Id, r.ExecId, syscall.Signal(r.Signal), r.All)
}

func (s *service) Wait(r *agentpb.WaitRequest, st grpc.ServerStreamingServer[agentpb.WaitResponse]) error {
	p, err := s.a.lookupProc(r.Id, r.ExecId)
	if err != nil {
		return err
	}
	select {
	case <-p.finished:
	case <-st.Context().Done():
		return st.Context().Err()
	}
	return st.Send(&agentpb.WaitResponse{Exit: vmagent.ExitToPB(p.exit)})
}

func (s *service) Attach(st grpc.BidiStreamingServer[agentpb.AttachRequest, agentpb.AttachResponse]) error {
	first, err := st.Recv()
	if err != nil {
		return err
	}
	p, err := s.a.lookupProc(first.Id, first.ExecId)
	if err != nil {
		return err
	}
	sub := p.out.Subscribe()
	defer p.out.Unsubscribe(sub)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return // the host went away or half-closed: output goes on
			}
			s.a.mu.Lock()
			in, console := p.stdin, p.console
			s.a.mu.Unlock()
			if in == nil {
				continue
			}
			if len(r.Stdin) > 0 {
				_, _ = in.Write(r.Stdin)
			}
			if r.CloseStdin {
				if console != nil {
					_, _ = in.Write([]byte{4}) // ^D: end of input on a terminal
				} else {
					s.a.mu.Lock()
					if p.stdin != nil {
						p.stdin.Close()
						p.stdin = nil
					}
					s.a.mu.Unlock()
				}
			}
		}
	}()
	for {
		select {
		case c, ok := <-sub.C():
			if !ok {
				if sub.Ended() {
					return st.Send(&agentpb.AttachResponse{End: true})
				}
				return errdefs.Unavailable("attach to %s/%q fell more than %d bytes behind and was cut off", first.Id, first.ExecId, tasklog.MaxQueued)
			}
			out := &agentpb.AttachResponse{Stdout: c.Data}
			if c.Stream == tasklog.Stderr {
				out = &agentpb.AttachResponse{Stderr: c.Data}
			}
			if err := st.Send(out); err != nil {
				return err
			}
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
}

func (s *service) ResizePTY(_ context.Context, r *agentpb.ResizePTYRequest) (*agentpb.Empty, error) {
	p, err := s.a.lookupProc(r.Id, r.ExecId)
	if err != nil {
		return nil, err
	}
	if !p.terminal {
		return nil, errdefs.InvalidArgument("process %q of container %s has no terminal", r.ExecId, r.Id)
	}
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	select {
	case <-p.exited:
		return nil, errdefs.InvalidState("process %q of container %s has exited; its terminal is gone", r.ExecId, r.Id)
	default:
	}
	if p.console == nil {
		return nil, errdefs.InvalidState("process %q of container %s has no terminal yet", r.ExecId, r.Id)
	}
	rc, err := p.console.SyscallConn()
	if err != nil {
		return nil, err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(r.Height), Col: uint16(r.Width)})
	})
	if err == nil {
		err = ioErr
	}
	if err != nil {
		return nil, fmt.Errorf("resize the terminal of %s/%q: %w", r.Id, r.ExecId, err)
	}
	return empty, nil
}

func (s *service) Update(ctx context.Context, r *agentpb.UpdateRequest) (*agentpb.Empty, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(r.ResourcesJson, &res); err != nil {
		return nil, errdefs.InvalidArgument("update %s: resources: %v", r.Id, err)
	}
	return empty, s.a.update(ctx, r.Id, &res)
}

func (s *service) Pause(ctx context.Context, r *agentpb.ContainerRequest) (*agentpb.Empty, error) {
	return empty, s.a.setPaused(ctx, r.Id, true)
}

func (s *service) Resume(ctx context.Context, r *agentpb.ContainerRequest) (*agentpb.Empty, error) {
	return empty, s.a.setPaused(ctx, r.Id, false)
}

func (s *service) Stats(ctx context.Context, r *agentpb.ContainerRequest) (*agentpb.StatsResponse, error) {
	s.a.mu.Lock()
	_, err := s.a.lookupLocked(r.Id)
	s.a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	u, err := s.a.cgroups.Usage(ctx, r.Id)
	if err != nil {
		return nil, err
	}
	return vmagent.UsageToPB(u), nil
}

func (s *service) State(_ context.Context, r *agentpb.ContainerRequest) (*agentpb.StateResponse, error) {
	s.a.mu.Lock()
	defer s.a.mu.Unlock()
	c, err := s.a.lookupLocked(r.Id)
	if err != nil {
		return nil, err
	}
	out := &agentpb.StateResponse{Status: string(c.status), Pid: int64(c.init.pid), CreatedAtUnixNanos: c.created.UnixNano()}
	if c.status == isolation.StatusStopped {
		out.Exit = vmagent.ExitToPB(c.init.exit)
	}
	return out, nil
}

func (s *service) Events(_ *agentpb.EventsRequest, st grpc.ServerStreamingServer[agentpb.Event]) error {
	ch := s.a.subscribe()
	defer s.a.unsubscribe(ch)
	// The header tells the client the subscription is in place.
	if err := st.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case e := <-ch:
			if err := st.Send(e); err != nil {
				return err
			}
		case <-st.Context().Done():
			return nil
		}
	}
}

func (s *service) Delete(_ context.Context, r *agentpb.ContainerRequest) (*agentpb.DeleteResponse, error) {
	e, err := s.a.delete(r.Id)
	if err != nil {
		return nil, err
	}
	return &agentpb.DeleteResponse{Exit: vmagent.ExitToPB(e)}, nil
}

func (s *service) Shutdown(context.Context, *agentpb.ShutdownRequest) (*agentpb.Empty, error) {
	go func() {
		time.Sleep(100 * time.Millisecond) // let the answer reach the host first
		s.a.Shutdown()
	}()
	return empty, nil
}
