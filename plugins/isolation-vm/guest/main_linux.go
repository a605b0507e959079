//go:build linux

// Command berth-vm-agent is the guest agent: PID 1 of every Berth VM. As
// PID 1 it boots the guest (package boot: pseudo filesystems, modules,
// tmpfs root, cgroup v2), then serves the Agent gRPC service
// (internal/vmagent) on the virtio-serial port org.berth.agent, or on
// vsock port 1024 with berth.agent=vsock on the kernel command line, for
// as long as the guest runs: a host that disconnects can come back. It
// never exits (PID 1 exiting panics the kernel); Shutdown powers off.
//
// Not as PID 1 (a debugging aid), `berth-vm-agent -listen unix:PATH
// -init PATH -run-dir DIR` serves the same API on a unix socket.
package main

import (
	"flag"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/plugins/isolation-vm/guest/agent"
	"github.com/berth-dev/berth/plugins/isolation-vm/guest/boot"
)

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "berth-vm-agent", Output: os.Stderr, Level: hclog.Info})
	if os.Getpid() == 1 {
		pid1(log)
	}
	listen := flag.String("listen", "", "unix:PATH to serve on (not PID 1)")
	initPath := flag.String("init", boot.SandboxInit, "the sandbox init binary")
	runDir := flag.String("run-dir", boot.RunDir, "per-container directories")
	flag.Parse()
	path, ok := strings.CutPrefix(*listen, "unix:")
	if !ok {
		log.Error("not PID 1: give -listen unix:PATH")
		os.Exit(2)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		log.Error("listen", "error", err)
		os.Exit(1)
	}
	a, err := agent.New(agent.Config{Log: log, RunDir: *runDir, InitPath: *initPath, System: notPID1{log}})
	if err != nil {
		log.Error("start the agent", "error", err)
		os.Exit(1)
	}
	if err := a.Serve(l); err != nil {
		log.Error("serve", "error", err)
		os.Exit(1)
	}
}

// pid1 boots the guest and serves the host forever.
func pid1(log hclog.Logger) {
	start := time.Now()
	mods, err := boot.Setup(log)
	if err != nil {
		fatal(log, "boot", err)
	}
	log.Info("guest ready", "modules", len(mods), "took", time.Since(start).Round(time.Millisecond))
	a, err := agent.New(agent.Config{Log: log, RunDir: boot.RunDir, InitPath: boot.SandboxInit, ReapAll: true,
		System: boot.System{Log: log}, Modules: mods})
	if err != nil {
		fatal(log, "start the agent", err)
	}
	// qemu's system_powerdown (hypervisor Machine.Shutdown) presses the ACPI
	// power button: shut down as the Shutdown call does.
	boot.WatchPowerButton(log, a.Shutdown)
	// PID 1 must not die of a signal (the kernel would panic): the ones a
	// guest may get (ctrl-alt-del's SIGINT, SIGTERM, SIGPWR) mean power off.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGPWR, syscall.SIGHUP)
	go func() {
		s := <-sigs
		log.Info("signal: shutting down", "signal", s)
		a.Shutdown()
	}()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF); err != nil {
		log.Warn("route ctrl-alt-del to a signal", "error", err)
	}
	var l net.Listener
	if boot.Cmdline()[vmagent.CmdlineTransport] == "vsock" {
		l, err = boot.ListenVsock(vmagent.VsockPort)
	} else {
		var port string
		if port, err = boot.FindPort(vmagent.ChannelName, 30*time.Second); err == nil {
			l, err = boot.ListenPort(log, port)
		}
	}
	if err != nil {
		fatal(log, "open the host channel", err)
	}
	log.Info("serving the host", "channel", l.Addr().String())
	for {
		if err := a.Serve(l); err != nil {
			log.Error("serve", "error", err)
		}
		time.Sleep(time.Second)
	}
}

// fatal logs err and powers off: PID 1 must not exit.
func fatal(log hclog.Logger, what string, err error) {
	log.Error("fatal: powering off", "step", what, "error", err)
	boot.System{Log: log}.Poweroff()
}

// notPID1 is the System of an agent that is not the guest's init: it
// refuses to change the machine it runs on.
type notPID1 struct{ log hclog.Logger }

func (n notPID1) SetClock(time.Time) error { return errNotPID1 }
func (n notPID1) AddEntropy([]byte) error  { return errNotPID1 }
func (n notPID1) SetHostname(string, string) error {
	return errNotPID1
}
func (n notPID1) Poweroff() { n.log.Info("shutdown requested; not PID 1, exiting"); os.Exit(0) }
