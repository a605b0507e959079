package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/berth-dev/berth/sdk/isolation"
)

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// makeRaw puts the terminal on f in raw mode, if it is one, and returns
// what restores it.
func makeRaw(f *os.File) (func(), error) {
	if !isTerminal(f) {
		return func() {}, nil
	}
	st, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return func() { _ = term.Restore(int(f.Fd()), st) }, nil
}

// terminalSize returns the size of the caller's terminal, nil when no
// stdio is a terminal.
func terminalSize() *isolation.ConsoleSize {
	for _, f := range []*os.File{os.Stdout, os.Stdin, os.Stderr} {
		if isTerminal(f) {
			if w, h, err := term.GetSize(int(f.Fd())); err == nil {
				return &isolation.ConsoleSize{Width: uint16(w), Height: uint16(h)}
			}
		}
	}
	return nil
}

// followWindowSize calls resize with the terminal's size now and at every
// SIGWINCH, until the returned stop is called.
func followWindowSize(ctx context.Context, resize func(isolation.ConsoleSize)) func() {
	fd := -1
	for _, f := range []*os.File{os.Stdout, os.Stdin, os.Stderr} {
		if isTerminal(f) {
			fd = int(f.Fd())
			break
		}
	}
	if fd < 0 {
		return func() {}
	}
	send := func() {
		if w, h, err := term.GetSize(fd); err == nil {
			resize(isolation.ConsoleSize{Width: uint16(w), Height: uint16(h)})
		}
	}
	send()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				send()
			}
		}
	}()
	return func() { signal.Stop(ch); cancel() }
}
