package main

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

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The control protocol between the plugin and a supervisor, on the
// supervisor's unix socket: one connection per call, a JSON request line,
// a JSON response line; an attach then carries frames both ways.

// Control operations.
const (
	opState  = "state"
	opStart  = "start"
	opExec   = "exec"
	opSignal = "signal"
	opWait   = "wait"
	opAttach = "attach"
	opResize = "resize"
	opPause  = "pause"
	opResume = "resume"
	opStats  = "stats"
	// opShutdown kills a task that has not exited and ends the supervisor.
	opShutdown = "shutdown"
)

type request struct {
	Op      string          `json:"op"`
	ExecID  string          `json:"exec_id,omitempty"`
	Process *specs.Process  `json:"process,omitempty"`
	Signal  syscall.Signal  `json:"signal,omitempty"`
	All     bool            `json:"all,omitempty"`
	Width   uint16          `json:"width,omitempty"`
	Height  uint16          `json:"height,omitempty"`
	Stdin   bool            `json:"stdin,omitempty"`
	Extra   json.RawMessage `json:"extra,omitempty"`
}

type response struct {
	// Error and Kind carry a failure; Kind is an errdefs kind name.
	Error string                `json:"error,omitempty"`
	Kind  string                `json:"kind,omitempty"`
	Pid   int                   `json:"pid,omitempty"`
	State *taskState            `json:"state,omitempty"`
	Exit  *isolation.ExitStatus `json:"exit,omitempty"`
	Stats *isolation.Stats      `json:"stats,omitempty"`
}

// errorKinds map errdefs sentinels to names on the wire.
var errorKinds = map[string]error{
	"not_found":       errdefs.ErrNotFound,
	"already_exists":  errdefs.ErrAlreadyExists,
	"invalid_state":   errdefs.ErrInvalidState,
	"invalid":         errdefs.ErrInvalidArgument,
	"not_implemented": errdefs.ErrNotImplemented,
}

func errorResponse(err error) response {
	r := response{Error: err.Error()}
	for k, sentinel := range errorKinds {
		if errors.Is(err, sentinel) {
			r.Kind = k
		}
	}
	return r
}

func (r response) err() error {
	if r.Error == "" {
		return nil
	}
	if s, ok := errorKinds[r.Kind]; ok {
		return fmt.Errorf("%s%w", r.Error, kindOnly{s})
	}
	return errors.New(r.Error)
}

// kindOnly wraps a sentinel without adding text, so errors.Is holds and the
// message stays the supervisor's.
type kindOnly struct{ err error }

func (k kindOnly) Error() string { return "" }
func (k kindOnly) Unwrap() error { return k.err }

// Frame types of an attach.
const (
	frameStdin      byte = 1
	frameStdinClose byte = 2
	frameStdout     byte = 3
	frameStderr     byte = 4
	// frameEnd: the process's output ended (it exited).
	frameEnd byte = 5
)

const maxFrame = 1 << 20

func writeFrame(w io.Writer, kind byte, data []byte) error {
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	if _, err := w.Write(append(hdr[:], data...)); err != nil {
		return err
	}
	return nil
}

func readFrame(r io.Reader) (byte, []byte, error) {
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

// errSupervisorGone means the supervisor's socket does not answer: it has
// exited (after its task did) or died.
var errSupervisorGone = errors.New("supervisor is not running")

// dial connects to a supervisor's socket.
func dial(ctx context.Context, socket string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", errSupervisorGone, err)
	}
	return c, nil
}

// call makes one request and reads its response; the connection is closed
// when ctx is done, so a blocking call (wait) ends with it.
func call(ctx context.Context, socket string, req request) (response, error) {
	c, err := dial(ctx, socket)
	if err != nil {
		return response{}, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return response{}, fmt.Errorf("%w (%v)", errSupervisorGone, err)
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		if ctx.Err() != nil {
			return response{}, ctx.Err()
		}
		return response{}, fmt.Errorf("%w (%v)", errSupervisorGone, err)
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		return response{}, fmt.Errorf("supervisor sent an unreadable response: %w", err)
	}
	return r, r.err()
}
