// Package supervisor is the per-container supervisor of Berth's sandbox
// containers and the protocol its owner (the isolation-sandbox plugin)
// speaks to it.
//
// A supervisor is started as `<binary> supervise` (on Linux the small
// static berth-sandbox-init, on darwin the plugin binary), one per
// container, in its own session
// with no pipe to the plugin once it has reported its start on fd 3. It is
// the container init's parent and a child subreaper (exec'd processes are
// reparented to it), holds the containers' stdio (pipes or a PTY), writes
// output to the container log, records exit statuses on disk, and serves a
// control socket until the plugin deletes the task. It links nothing of the
// SDK's gRPC side, so an idle one costs little memory. The platform part
// is a backend: Linux namespaces and cgroups, or darwin's Seatbelt.
//
// The control protocol, on the supervisor's unix socket: one connection per
// call, a JSON Request line, a JSON Response line; an attach then carries
// frames both ways.
package supervisor

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/mount"
)

// Control operations.
const (
	OpState  = "state"
	OpStart  = "start"
	OpExec   = "exec"
	OpSignal = "signal"
	OpWait   = "wait"
	OpAttach = "attach"
	OpResize = "resize"
	OpPause  = "pause"
	OpResume = "resume"
	OpStats  = "stats"
	// OpShutdown kills a created or exited task and ends the supervisor; a
	// running task is refused (KindInvalidState) unless All is set.
	OpShutdown = "shutdown"
)

// Request is one call.
type Request struct {
	Op      string         `json:"op"`
	ExecID  string         `json:"exec_id,omitempty"`
	Process *specs.Process `json:"process,omitempty"`
	Signal  syscall.Signal `json:"signal,omitempty"`
	All     bool           `json:"all,omitempty"`
	Width   uint16         `json:"width,omitempty"`
	Height  uint16         `json:"height,omitempty"`
	Stdin   bool           `json:"stdin,omitempty"`
}

// Response answers a Request.
type Response struct {
	// Error and Kind carry a failure; Kind is one of the Kind* names.
	Error string      `json:"error,omitempty"`
	Kind  string      `json:"kind,omitempty"`
	Pid   int         `json:"pid,omitempty"`
	State *State      `json:"state,omitempty"`
	Exit  *ExitStatus `json:"exit,omitempty"`
	Stats *Stats      `json:"stats,omitempty"`
}

// Error kinds; the plugin maps them to sdk/errdefs.
const (
	KindNotFound      = "not_found"
	KindAlreadyExists = "already_exists"
	KindInvalidState  = "invalid_state"
	KindInvalid       = "invalid"
)

// Error is a failure of a kind.
type Error struct {
	Kind, Msg string
}

func (e *Error) Error() string { return e.Msg }

func errorf(kind, format string, args ...any) error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func errorResponse(err error) Response {
	r := Response{Error: err.Error()}
	var e *Error
	if errors.As(err, &e) {
		r.Kind = e.Kind
	}
	return r
}

// Err returns the response's failure as an *Error, or nil.
func (r Response) Err() error {
	if r.Error == "" {
		return nil
	}
	return &Error{Kind: r.Kind, Msg: r.Error}
}

// Status is a task's state.
type Status string

// Task statuses (the values of sdk/isolation.Status).
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusPaused  Status = "paused"
	StatusStopped Status = "stopped"
)

// ExitStatus is how a process ended; its JSON is that of
// sdk/isolation.ExitStatus.
type ExitStatus struct {
	Code      int
	Signal    syscall.Signal
	ExitedAt  time.Time
	OOMKilled bool
}

// Stats is a task's resource use (the fields of sdk/isolation.Stats the
// cgroup gives).
type Stats = sandbox.Stats

// TaskSpec is what the supervisor reads of the task's spec.json (written by
// the plugin as an sdk/isolation.Spec; the field names match).
type TaskSpec struct {
	ID        string
	OCI       *specs.Spec
	Rootfs    []mount.Mount
	Placement struct{ CgroupPath string }
	LogPath   string
	// Annotations: AnnotationOpenStdin and the log limits.
	Annotations map[string]string
}

// State is a task as its supervisor records it in state.json.
type State struct {
	ID            string      `json:"id"`
	SupervisorPid int         `json:"supervisor_pid"`
	Socket        string      `json:"socket"`
	Pid           int         `json:"pid"`
	Status        Status      `json:"status"`
	CreatedAt     time.Time   `json:"created_at"`
	StartedAt     time.Time   `json:"started_at,omitzero"`
	Exit          *ExitStatus `json:"exit,omitempty"`
	// Cgroup is the task's cgroup (Linux); Pgid its init's process group
	// and Pgids every process group of the task, the init's and its
	// execs' (darwin: each process starts a session of its own).
	Cgroup *sandbox.Cgroup `json:"cgroup,omitempty"`
	Pgid   int             `json:"pgid,omitempty"`
	Pgids  []int           `json:"pgids,omitempty"`
}

// Frame types of an attach.
const (
	FrameStdin      byte = 1
	FrameStdinClose byte = 2
	FrameStdout     byte = 3
	FrameStderr     byte = 4
	// FrameEnd: the process's output ended (it exited).
	FrameEnd byte = 5
)

const maxFrame = 1 << 20

// WriteFrame writes one attach frame.
func WriteFrame(w io.Writer, kind byte, data []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	_, err := w.Write(append(hdr[:], data...))
	return err
}

// ReadFrame reads one attach frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes is over %d", n, maxFrame)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return 0, nil, err
	}
	return hdr[0], data, nil
}

// ErrGone means the supervisor's socket does not answer: it has exited
// (its task was deleted) or died.
var ErrGone = errors.New("supervisor is not running")

// Dial connects to a supervisor's socket.
func Dial(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrGone, err)
	}
	return c, nil
}

// Call makes one request and reads its response; the connection is closed
// when ctx is done, so a blocking call (wait) ends with it.
func Call(ctx context.Context, socket string, req Request) (Response, error) {
	c, err := Dial(ctx, socket)
	if err != nil {
		return Response{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("%w (%v)", ErrGone, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return Response{}, ctx.Err()
		}
		return Response{}, fmt.Errorf("%w (%v)", ErrGone, err)
	}
	var r Response
	if err := json.Unmarshal(line, &r); err != nil {
		return Response{}, fmt.Errorf("supervisor sent an unreadable response: %w", err)
	}
	return r, r.Err()
}
