package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/network"
)

// publicAPI is the public API's services the container commands use; all of
// them are served by the api plugin on one socket.
type publicAPI struct {
	conn   *grpc.ClientConn
	lc     *lifecycle.Client
	logs   *api.LogsClient
	images *images.Client
	net    *network.Client
}

// dialPublicAPI connects to the gRPC endpoint the daemon's status lists,
// waiting up to 10s for an api plugin that restarts.
func dialPublicAPI(ctx context.Context, g *globals) (*publicAPI, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	conn, err := dialPublic(ctx, cfg, publicAPIWait)
	if err != nil {
		return nil, err
	}
	return &publicAPI{conn: conn, lc: lifecycle.NewClient(conn), logs: api.NewLogsClient(conn), images: images.NewClient(conn), net: network.NewClient(conn)}, nil
}

// withAPI runs fn with the public API.
func withAPI(c *cobra.Command, g *globals, fn func(ctx context.Context, p *publicAPI) error) error {
	ctx := c.Context()
	p, err := dialPublicAPI(ctx, g)
	if err != nil {
		return err
	}
	defer p.conn.Close()
	return userError(fn(ctx, p))
}

// userError turns an error of the public API into one readable line: an
// API that is not served says which plugin is missing.
func userError(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case errdefs.IsNotImplemented(err) && strings.Contains(msg, "unknown service berth."):
		return errors.New("the api plugin does not serve containers: no lifecycle plugin is configured (enable plugin \"lifecycle\" \"local\" in config.hcl)")
	case errdefs.IsUnavailable(err) && strings.Contains(msg, "connection error"):
		return errors.New("lost the connection to the berth API (the daemon or its api plugin stopped; see berth system status)")
	}
	return err
}

// addContainerCommands adds `berth container …` and the Docker-style
// top-level shortcuts.
func addContainerCommands(root *cobra.Command, g *globals) {
	container := &cobra.Command{Use: "container", Short: "Manage containers"}
	build := func() []*cobra.Command {
		return []*cobra.Command{
			newRunCommand(g), newCreateCommand(g), newStartCommand(g), newStopCommand(g),
			newRestartCommand(g), newKillCommand(g), newRmCommand(g), newPsCommand(g),
			newContainerInspectCommand(g), newLogsCommand(g), newExecCommand(g), newAttachCommand(g),
			newPauseCommand(g), newUnpauseCommand(g), newWaitCommand(g), newEventsCommand(g),
			newStatsCommand(g), newRenameCommand(g), newCheckpointCommand(g), newRestoreCommand(g),
			newUpdateCommand(g), newCpCommand(g), newExportCommand(g), newTopCommand(g),
		}
	}
	container.AddCommand(build()...)
	container.AddCommand(newContainerPruneCommand(g))
	root.AddCommand(container)
	root.AddCommand(build()...)
	root.AddCommand(newVolumeCommand(g))
}

// eachRef runs fn for every ref, printing the ref of each success as Docker
// does; the errors are reported one per line and make the exit status 1.
func eachRef(refs []string, fn func(ref string) error) error {
	failed := false
	for _, r := range refs {
		if err := fn(r); err != nil {
			printErr(userError(err))
			failed = true
			continue
		}
		fmt.Println(r)
	}
	if failed {
		return exitError(1)
	}
	return nil
}

func newStopCommand(g *globals) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop CONTAINER...",
		Short: "Stop containers: the stop signal, then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error {
					_, err := p.lc.Stop(ctx, ref, stopTimeout(c, timeout))
					return err
				})
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "seconds to wait before killing (default: the container's stop timeout)")
	return cmd
}

// stopTimeout is -t as the lifecycle wants it: negative when not given.
func stopTimeout(c *cobra.Command, seconds int) time.Duration {
	if !c.Flags().Changed("time") {
		return -1
	}
	return time.Duration(seconds) * time.Second
}

func newRestartCommand(g *globals) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "restart CONTAINER...",
		Short: "Stop (if running) and start containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error {
					ct, err := p.lc.Get(ctx, ref)
					if err != nil {
						return err
					}
					if ct.State == lifecycle.StateRunning || ct.State == lifecycle.StatePaused {
						if _, err := p.lc.Stop(ctx, ct.ID, stopTimeout(c, timeout)); err != nil {
							return err
						}
					}
					_, err = p.lc.Start(ctx, ct.ID)
					return err
				})
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 0, "seconds to wait before killing (default: the container's stop timeout)")
	return cmd
}

func newKillCommand(g *globals) *cobra.Command {
	var signal string
	cmd := &cobra.Command{
		Use:   "kill CONTAINER...",
		Short: "Send a signal (default SIGKILL) to containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sig, err := parseSignal(signal)
			if err != nil {
				return err
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error { return p.lc.Kill(ctx, ref, sig) })
			})
		},
	}
	cmd.Flags().StringVarP(&signal, "signal", "s", "KILL", "signal name (KILL, SIGTERM, HUP…) or number")
	return cmd
}

func newRmCommand(g *globals) *cobra.Command {
	var force, volumes bool
	cmd := &cobra.Command{
		Use:     "rm CONTAINER...",
		Aliases: []string{"remove"},
		Short:   "Remove containers (with -f, stop running ones first)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error {
					if !volumes {
						return p.lc.Delete(ctx, ref, force)
					}
					ct, err := p.lc.Get(ctx, ref)
					if err != nil {
						return err
					}
					if err := p.lc.Delete(ctx, ct.ID, force); err != nil {
						return err
					}
					return lifecycle.RemoveAnonymousVolumes(ctx, p.lc, ct)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop a running container first")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the anonymous volumes the container used")
	return cmd
}

func newPauseCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pause CONTAINER...",
		Short: "Freeze every process of containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error { _, err := p.lc.Pause(ctx, ref); return err })
			})
		},
	}
}

func newUnpauseCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unpause CONTAINER...",
		Short: "Thaw paused containers",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error { _, err := p.lc.Resume(ctx, ref); return err })
			})
		},
	}
}

func newWaitCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Wait for containers to stop and print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				failed := false
				for _, ref := range args {
					st, err := p.lc.Wait(ctx, ref)
					if err != nil {
						printErr(userError(err))
						failed = true
						continue
					}
					fmt.Println(st.Code)
				}
				if failed {
					return exitError(1)
				}
				return nil
			})
		},
	}
}

func newContainerPruneCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove every stopped container",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ids, err := stoppedContainers(ctx, p)
				if err != nil {
					return err
				}
				if len(ids) == 0 {
					fmt.Println("no stopped containers")
					return nil
				}
				fmt.Println("Deleted containers:")
				return eachRef(ids, func(id string) error { return p.lc.Delete(ctx, id, false) })
			})
		},
	}
}

// parseSignal reads KILL, SIGKILL, kill or 9.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := parseUint(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal %s is out of range (1-64)", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signalsByName[name]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q (want a name like TERM or a number)", s)
}

func parseUint(s string) (int, error) {
	n := 0
	if s == "" {
		return 0, errors.New("empty")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errors.New("not a number")
		}
		n = n*10 + int(r-'0')
		if n > 1<<20 {
			return 0, errors.New("too large")
		}
	}
	return n, nil
}

var signalsByName = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "BUS": syscall.SIGBUS, "CHLD": syscall.SIGCHLD,
	"CONT": syscall.SIGCONT, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP, "ILL": syscall.SIGILL,
	"INT": syscall.SIGINT, "IO": syscall.SIGIO, "KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE,
	"PROF": syscall.SIGPROF, "QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "STOP": syscall.SIGSTOP,
	"SYS": syscall.SIGSYS, "TERM": syscall.SIGTERM, "TRAP": syscall.SIGTRAP, "TSTP": syscall.SIGTSTP,
	"TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU, "URG": syscall.SIGURG, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "VTALRM": syscall.SIGVTALRM, "WINCH": syscall.SIGWINCH, "XCPU": syscall.SIGXCPU,
	"XFSZ": syscall.SIGXFSZ,
}
