// Package errdefs defines the typed errors every Berth layer returns and the
// mapping that carries them across gRPC in both directions.
//
// A plugin returns, say, errdefs.InvalidState("container %s is stopped", id);
// the core receives an error for which errors.Is(err, errdefs.ErrInvalidState)
// holds and whose message is exactly the plugin's. The mapping goes through
// gRPC status codes (as containerd's errgrpc does), so it also works with
// plugins written in other languages that return the matching codes.
package errdefs

import (
	"context"
	"errors"
	"fmt"
)

// The sentinel kinds. Test with errors.Is; create with the constructors below
// so the message reads as the caller wrote it.
var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an object with that name or key exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidState: the object exists but its state forbids the request
	// (pausing a stopped container, removing a parent snapshot with children).
	ErrInvalidState = errors.New("invalid state")
	// ErrNotImplemented: the plugin does not offer this operation; its
	// capabilities should have said so.
	ErrNotImplemented = errors.New("not implemented")
	// ErrUnavailable: a dependency (plugin, daemon, device) cannot be reached
	// now; retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrInvalidArgument: the request itself is malformed or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
)

// kinds lists the sentinels in the order Kind looks them up.
var kinds = []error{ErrNotFound, ErrAlreadyExists, ErrInvalidState, ErrNotImplemented, ErrUnavailable, ErrInvalidArgument}

// typed is an error of one kind whose message is the caller's text alone.
type typed struct {
	kind error
	msg  string
}

func (e *typed) Error() string { return e.msg }
func (e *typed) Unwrap() error { return e.kind }

func newTyped(kind error, format string, args []any) error {
	return &typed{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// NotFound returns an error of kind ErrNotFound with the formatted message.
func NotFound(format string, args ...any) error { return newTyped(ErrNotFound, format, args) }

// AlreadyExists returns an error of kind ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error {
	return newTyped(ErrAlreadyExists, format, args)
}

// InvalidState returns an error of kind ErrInvalidState.
func InvalidState(format string, args ...any) error {
	return newTyped(ErrInvalidState, format, args)
}

// NotImplemented returns an error of kind ErrNotImplemented.
func NotImplemented(format string, args ...any) error {
	return newTyped(ErrNotImplemented, format, args)
}

// Unavailable returns an error of kind ErrUnavailable.
func Unavailable(format string, args ...any) error {
	return newTyped(ErrUnavailable, format, args)
}

// InvalidArgument returns an error of kind ErrInvalidArgument.
func InvalidArgument(format string, args ...any) error {
	return newTyped(ErrInvalidArgument, format, args)
}

// Kind returns the sentinel err wraps, or nil when it is none of them.
func Kind(err error) error {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// IsNotFound reports whether err is of kind ErrNotFound.
func IsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// IsAlreadyExists reports whether err is of kind ErrAlreadyExists.
func IsAlreadyExists(err error) bool { return errors.Is(err, ErrAlreadyExists) }

// IsInvalidState reports whether err is of kind ErrInvalidState.
func IsInvalidState(err error) bool { return errors.Is(err, ErrInvalidState) }

// IsNotImplemented reports whether err is of kind ErrNotImplemented.
func IsNotImplemented(err error) bool { return errors.Is(err, ErrNotImplemented) }

// IsUnavailable reports whether err is of kind ErrUnavailable.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// IsInvalidArgument reports whether err is of kind ErrInvalidArgument.
func IsInvalidArgument(err error) bool { return errors.Is(err, ErrInvalidArgument) }

// isContext reports whether err is a context cancellation or deadline.
func isContext(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
