package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
)

// InitMain is the main of the sandbox init binary: it reads its config from
// the init socket, runs RunInit with sys, and on failure reports the error
// to the parent and exits 1. The caller must have locked the main goroutine
// to its thread in an init function. Run as ReaperName (argv[0]'s base
// name, the container's --init), it is ReaperMain instead.
func InitMain(sys Syscalls) {
	if IsReaper(os.Args[0]) {
		os.Exit(ReaperMain(os.Args[1:]))
	}
	fd, err := strconv.Atoi(os.Getenv(EnvInitSock))
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth-sandbox-init is started by Berth's sandbox runtime, not by hand")
		os.Exit(2)
	}
	sock := os.NewFile(uintptr(fd), "init-sock")
	ch := &socketChannel{sock}
	var cfg InitConfig
	if err := recvJSON(sock, &cfg); err != nil {
		ch.fail(fmt.Errorf("read the init config: %w", err))
	}
	if err := RunInit(sys, ch, &cfg, RootfsUsers{Root: "/"}); err != nil {
		ch.fail(err)
	}
	ch.fail(errors.New("exec returned without an error"))
}

// socketChannel is the init side of the init socket.
type socketChannel struct{ f *os.File }

func (c *socketChannel) Wait(kind string) error {
	var m message
	if err := recvJSON(c.f, &m); err != nil {
		return fmt.Errorf("wait for %q from the parent: %w", kind, err)
	}
	if m.Type != kind {
		return fmt.Errorf("parent sent %q, want %q", m.Type, kind)
	}
	return nil
}

func (c *socketChannel) Send(kind string) error { return sendJSON(c.f, message{Type: kind}) }

func (c *socketChannel) SendConsole(master *os.File) error {
	defer master.Close()
	return sendConsole(c.f, master)
}

func (c *socketChannel) fail(err error) {
	if sendJSON(c.f, message{Type: msgError, Error: err.Error()}) != nil {
		fmt.Fprintln(os.Stderr, "berth-sandbox-init:", err)
	}
	os.Exit(1)
}
