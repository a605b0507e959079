//go:build linux || darwin

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The supervisor serves one gRPC server on its socket with two services:
//
//   - its own control service (controlService: status, start, wait of the
//     init, pause/resume of the VM, checkpoint, shutdown), whose messages
//     are JSON, and
//   - every other method, forwarded byte for byte to the guest agent over
//     the VM's agent channel (the agent's Agent service: exec, signal,
//     attach, resize, stats, …), so the plugin speaks to the agent through
//     the supervisor with the ordinary vmagent client.
//
// Both ride one codec, forced on the server: raw frames pass through
// untouched (the forwarded service), anything else is JSON (control).

// controlService is the control service's gRPC name.
const controlService = "berth.vm.supervisor.v1.Control"

// frame is one message of a forwarded call, kept as the bytes on the wire.
type frame struct{ payload []byte }

// codec passes frames through and encodes everything else as JSON. It
// calls itself "proto" so forwarded responses carry the content type the
// agent's proto clients expect.
type codec struct{}

var _ encoding.Codec = codec{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	switch m := v.(type) {
	case *frame:
		return m.payload, nil
	case proto.Message:
		return proto.Marshal(m)
	}
	return json.Marshal(v)
}

func (codec) Unmarshal(data []byte, v any) error {
	switch m := v.(type) {
	case *frame:
		m.payload = append([]byte(nil), data...)
		return nil
	case proto.Message:
		return proto.Unmarshal(data, m)
	}
	return json.Unmarshal(data, v)
}

// Control messages.
type (
	empty struct{}

	// statusReply is the supervisor's view of its task.
	statusReply struct {
		State State `json:"state"`
	}
	pidReply struct {
		Pid int `json:"pid"`
	}
	exitReply struct {
		Exit isolation.ExitStatus `json:"exit"`
	}
	checkpointRequest struct {
		Dir          string `json:"dir"`
		LeaveRunning bool   `json:"leave_running"`
	}
)

// controller is what the control service calls; the supervisor implements
// it.
type controller interface {
	status(ctx context.Context) (State, error)
	start(ctx context.Context) (int, error)
	wait(ctx context.Context) (isolation.ExitStatus, error)
	pause(ctx context.Context) error
	resume(ctx context.Context) error
	checkpoint(ctx context.Context, req checkpointRequest) error
	shutdown(ctx context.Context) (isolation.ExitStatus, error)
}

func unary[Req, Resp any](name string, call func(c controller, ctx context.Context, req *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, r any) (any, error) { return call(srv.(controller), ctx, r.(*Req)) }
			if interceptor == nil {
				return h(ctx, req)
			}
			return interceptor(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + controlService + "/" + name}, h)
		},
	}
}

var controlDesc = grpc.ServiceDesc{
	ServiceName: controlService,
	HandlerType: (*controller)(nil),
	Methods: []grpc.MethodDesc{
		unary("Status", func(c controller, ctx context.Context, _ *empty) (*statusReply, error) {
			st, err := c.status(ctx)
			return &statusReply{State: st}, err
		}),
		unary("Start", func(c controller, ctx context.Context, _ *empty) (*pidReply, error) {
			pid, err := c.start(ctx)
			return &pidReply{Pid: pid}, err
		}),
		unary("Wait", func(c controller, ctx context.Context, _ *empty) (*exitReply, error) {
			e, err := c.wait(ctx)
			return &exitReply{Exit: e}, err
		}),
		unary("Pause", func(c controller, ctx context.Context, _ *empty) (*empty, error) { return &empty{}, c.pause(ctx) }),
		unary("Resume", func(c controller, ctx context.Context, _ *empty) (*empty, error) { return &empty{}, c.resume(ctx) }),
		unary("Checkpoint", func(c controller, ctx context.Context, r *checkpointRequest) (*empty, error) {
			return &empty{}, c.checkpoint(ctx, *r)
		}),
		unary("Shutdown", func(c controller, ctx context.Context, _ *empty) (*exitReply, error) {
			e, err := c.shutdown(ctx)
			return &exitReply{Exit: e}, err
		}),
	},
}

// newControlServer returns the supervisor's gRPC server: the control
// service on ctl and every other method forwarded to the agent connection
// agent returns (nil while there is none).
func newControlServer(ctl controller, agent func() *grpc.ClientConn) *grpc.Server {
	opts := append([]grpc.ServerOption{
		grpc.ForceServerCodec(codec{}),
		grpc.UnknownServiceHandler(forwarder(agent)),
	}, errdefs.ServerOptions()...)
	s := grpc.NewServer(opts...)
	s.RegisterService(&controlDesc, ctl)
	return s
}

// forwarder relays a call of any method to the agent connection: client
// messages up, agent messages (and the final status) down.
func forwarder(agent func() *grpc.ClientConn) grpc.StreamHandler {
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	return func(_ any, in grpc.ServerStream) error {
		method, ok := grpc.MethodFromServerStream(in)
		if !ok {
			return errdefs.InvalidArgument("forward: no method name")
		}
		cc := agent()
		if cc == nil {
			return errdefs.Unavailable("the guest agent is not connected (the VM is being checkpointed, or paused after one)")
		}
		ctx, cancel := context.WithCancel(in.Context())
		defer cancel()
		out, err := cc.NewStream(ctx, desc, method, grpc.ForceCodec(codec{}))
		if err != nil {
			return err
		}
		go func() {
			for {
				var f frame
				if err := in.RecvMsg(&f); err != nil {
					if errors.Is(err, io.EOF) {
						_ = out.CloseSend()
					} else {
						cancel() // the caller went away: so does the agent call
					}
					return
				}
				if err := out.SendMsg(&f); err != nil {
					return // the agent's side ended; its status comes below
				}
			}
		}()
		for {
			var f frame
			if err := out.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err // the agent's status, passed through
			}
			if err := in.SendMsg(&f); err != nil {
				return err
			}
		}
	}
}

// dialSupervisor connects to a supervisor's socket: the connection carries
// the control service and the forwarded agent service.
func dialSupervisor(socket string) (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}
	opts := append([]grpc.DialOption{
		grpc.WithContextDialer(dial),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, errdefs.DialOptions()...)
	return grpc.NewClient("passthrough:///berth-vm-supervisor", opts...)
}

// errGone marks a supervisor that is no longer there (socket missing or
// refused): its task reads as stopped.
var errGone = errors.New("the task's supervisor is gone")

// callControl calls a control method; a supervisor that does not answer
// is errGone.
func callControl(ctx context.Context, cc *grpc.ClientConn, method string, req, resp any) error {
	err := cc.Invoke(ctx, "/"+controlService+"/"+method, req, resp, grpc.ForceCodec(codec{}), grpc.WaitForReady(false))
	if errdefs.IsUnavailable(err) && ctx.Err() == nil {
		return fmt.Errorf("%w: %v", errGone, err)
	}
	return err
}

// shortCtx bounds a quick control call.
func shortCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}
