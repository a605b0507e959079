package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// runtimeStarted is when the init binary's Go packages were initialised
// (its runtime had started).
var runtimeStarted = time.Now()

// phases records the init's setup steps for the parent (msgReady); one
// init runs per process, tests run RunInit in process concurrently.
var (
	phasesMu sync.Mutex
	phases   []Phase
)

// markPhase records that step name ended now.
func markPhase(name string) {
	phasesMu.Lock()
	defer phasesMu.Unlock()
	if len(phases) < 64 {
		phases = append(phases, Phase{Name: name, At: time.Now().UnixNano()})
	}
}

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
	phasesMu.Lock()
	phases = append(phases, Phase{Name: "runtime", At: runtimeStarted.UnixNano()})
	phasesMu.Unlock()
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

func (c *socketChannel) Send(kind string) error {
	m := message{Type: kind}
	if kind == msgReady {
		markPhase("ready")
		phasesMu.Lock()
		m.Phases = append([]Phase(nil), phases...)
		phasesMu.Unlock()
	}
	return sendJSON(c.f, m)
}

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
