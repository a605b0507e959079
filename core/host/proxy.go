package host

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// frame is one gRPC message, carried as opaque bytes.
type frame struct{ payload []byte }

// rawCodec passes message bytes through untouched, so the forwarder needs no
// knowledge of the services it forwards.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("forwarder: cannot marshal %T", v)
	}
	return f.payload, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("forwarder: cannot unmarshal into %T", v)
	}
	f.payload = append(f.payload[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// connResolver returns the connection to forward to now, or an error of kind
// errdefs.ErrUnavailable while the target plugin is down.
type connResolver func() (*grpc.ClientConn, error)

// newForwardingServer returns a gRPC server (with go-plugin's options) that
// forwards every call, whatever its service, to the connection resolve
// returns at call time. Brokered handles to plugins are such servers: a
// handle outlives restarts of the plugin it names because each call finds
// the plugin's current connection.
func newForwardingServer(resolve connResolver) func([]grpc.ServerOption) *grpc.Server {
	return func(opts []grpc.ServerOption) *grpc.Server {
		opts = append(opts,
			grpc.ForceServerCodec(rawCodec{}),
			grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
				return errdefs.ToGRPC(forward(ss, resolve))
			}))
		return grpc.NewServer(opts...)
	}
}

// forward relays one call in both directions until the target ends it.
func forward(ss grpc.ServerStream, resolve connResolver) error {
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "forwarder: no method in stream")
	}
	conn, err := resolve()
	if err != nil {
		return err
	}
	ctx := ss.Context()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, md.Copy())
	}
	desc := &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}
	cs, err := conn.NewStream(ctx, desc, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}

	// Caller → target, until the caller closes its side.
	upstreamDone := make(chan error, 1)
	go func() {
		for {
			f := &frame{}
			if err := ss.RecvMsg(f); err != nil {
				if errors.Is(err, io.EOF) {
					upstreamDone <- cs.CloseSend()
				} else {
					upstreamDone <- err
				}
				return
			}
			if err := cs.SendMsg(f); err != nil {
				upstreamDone <- err
				return
			}
		}
	}()

	// Target → caller, until the target ends the call.
	headerSent := false
	for {
		f := &frame{}
		err := cs.RecvMsg(f)
		if !headerSent {
			if md, herr := cs.Header(); herr == nil {
				_ = ss.SendHeader(md)
			}
			headerSent = true
		}
		if err != nil {
			ss.SetTrailer(cs.Trailer())
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := ss.SendMsg(f); err != nil {
			return err
		}
	}
}
