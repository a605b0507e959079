package errdefs

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var toCode = map[error]codes.Code{
	ErrNotFound:        codes.NotFound,
	ErrAlreadyExists:   codes.AlreadyExists,
	ErrInvalidState:    codes.FailedPrecondition,
	ErrNotImplemented:  codes.Unimplemented,
	ErrUnavailable:     codes.Unavailable,
	ErrInvalidArgument: codes.InvalidArgument,
}

var fromCode = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.AlreadyExists:      ErrAlreadyExists,
	codes.FailedPrecondition: ErrInvalidState,
	codes.Unimplemented:      ErrNotImplemented,
	codes.Unavailable:        ErrUnavailable,
	codes.InvalidArgument:    ErrInvalidArgument,
}

// ToGRPC turns err into a gRPC status error whose code names its kind and
// whose message is err's message. nil stays nil; an error that already is a
// status passes through unchanged.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	if code, ok := toCode[Kind(err)]; ok {
		return status.Error(code, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromGRPC turns a gRPC status error back into a typed error: the kind comes
// from the code, the message from the status. Cancellation and deadline codes
// become context.Canceled and context.DeadlineExceeded (wrapped with the
// message). Errors that are not statuses pass through unchanged.
func FromGRPC(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.OK:
		return nil
	case codes.Canceled:
		return &typed{kind: context.Canceled, msg: st.Message()}
	case codes.DeadlineExceeded:
		return &typed{kind: context.DeadlineExceeded, msg: st.Message()}
	}
	if kind, ok := fromCode[st.Code()]; ok {
		return &typed{kind: kind, msg: st.Message()}
	}
	return errors.New(st.Message())
}

// ServerOptions returns the interceptors that map a server's returned errors
// with ToGRPC. Every Berth gRPC server installs them.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			return resp, ToGRPC(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return ToGRPC(h(srv, ss))
		}),
	}
}

// DialOptions returns the interceptors that map a client's received errors
// with FromGRPC. Stream errors surface from RecvMsg/SendMsg and are mapped
// there too.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return FromGRPC(invoker(ctx, method, req, reply, cc, opts...))
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, FromGRPC(err)
			}
			return &mappedClientStream{ClientStream: s}, nil
		}),
	}
}

type mappedClientStream struct{ grpc.ClientStream }

func (s *mappedClientStream) RecvMsg(m any) error { return FromGRPC(s.ClientStream.RecvMsg(m)) }
func (s *mappedClientStream) SendMsg(m any) error { return FromGRPC(s.ClientStream.SendMsg(m)) }
