package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func newRunCommand(g *globals) *cobra.Command {
	var f createFlags
	var detach, rm bool
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND [ARG...]]",
		Short: "Create and start a container; without -d, wait for it and exit with its code",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := f.config(args[0], args[1:])
			if err != nil {
				return err
			}
			if rm && cfg.Restart.Name != "no" {
				return fmt.Errorf("--rm and --restart %s conflict: a container that is removed when it stops cannot be restarted", f.restart)
			}
			if detach && rm {
				// The api plugin removes it once it stops.
				if cfg.Labels == nil {
					cfg.Labels = map[string]string{}
				}
				cfg.Labels[api.LabelAutoRemove] = "true"
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := createPulling(ctx, p, f, cfg)
				if err != nil {
					if code := startFailureCode(err); code != 0 {
						printErr(err)
						return exitError(code)
					}
					return err
				}
				if detach {
					if _, err := p.lc.Start(ctx, ct.ID); err != nil {
						return err
					}
					fmt.Println(ct.ID)
					return nil
				}
				code, err := runAttached(ctx, p, ct, true, f.interactive, f.tty)
				if code < 0 {
					return nil // detached: the container runs on
				}
				if rm {
					dctx := context.WithoutCancel(ctx)
					if derr := p.lc.Delete(dctx, ct.ID, true); derr != nil && !errdefs.IsNotFound(derr) && err == nil {
						err = derr
					} else if derr == nil {
						// docker run --rm takes the anonymous volumes too.
						if verr := lifecycle.RemoveAnonymousVolumes(dctx, p.lc, ct); verr != nil && err == nil {
							err = verr
						}
					}
				}
				if err != nil {
					return err
				}
				if code != 0 {
					return exitError(code)
				}
				return nil
			})
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and print the container ID")
	cmd.Flags().BoolVar(&rm, "rm", false, "remove the container when it exits")
	return cmd
}

func newCreateCommand(g *globals) *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND [ARG...]]",
		Short: "Create a container (start it with berth start)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cfg, err := f.config(args[0], args[1:])
			if err != nil {
				return err
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := createPulling(ctx, p, f, cfg)
				if err != nil {
					return err
				}
				fmt.Println(ct.ID)
				return nil
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}

// createPulling creates the container, pulling its image first when the
// store lacks it (as docker run does).
func createPulling(ctx context.Context, p *publicAPI, f createFlags, cfg lifecycle.Config) (lifecycle.Container, error) {
	if _, err := p.images.Inspect(ctx, cfg.Image); errdefs.IsNotFound(err) {
		plat, err := parsePlatform(f.platform)
		if err != nil {
			return lifecycle.Container{}, err
		}
		fmt.Fprintf(os.Stderr, "Unable to find image %s locally; pulling it\n", cfg.Image)
		pr := newProgressPrinter(os.Stderr, false)
		_, err = p.images.Pull(ctx, cfg.Image, images.PullOptions{Platform: plat}, pr.update)
		pr.finish()
		if err != nil {
			return lifecycle.Container{}, err
		}
	} else if err != nil {
		return lifecycle.Container{}, err
	}
	return p.lc.Create(ctx, f.name, cfg)
}

// runAttached connects this terminal (or these pipes) to container ct's
// init process, starts it when start is set, and returns its exit code once
// it exits. A detach (Ctrl-P Ctrl-Q on a terminal) returns -1 and no error
// with the container still running.
func runAttached(ctx context.Context, p *publicAPI, ct lifecycle.Container, start, stdin, tty bool) (int, error) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	attached := make(chan attachResult, 1)
	go func() { attached <- attachProcess(actx, p, ct.ID, "", stdin, tty) }()
	if start {
		if _, err := p.lc.Start(ctx, ct.ID); err != nil {
			// A process that could not start has Docker's exit code
			// (127 not found, 126 not executable): report it and exit so.
			if now, gerr := p.lc.Get(ctx, ct.ID); gerr == nil && now.State == lifecycle.StateStopped && now.ExitCode != 0 {
				printErr(userError(err))
				return now.ExitCode, nil
			}
			return 0, err
		}
		if tty {
			// The attach's first resize may have come before the process.
			stop := followWindowSize(ctx, func(size isolation.ConsoleSize) { _ = p.lc.Resize(ctx, ct.ID, "", size) })
			stop()
		}
	}
	if !tty {
		stopProxy := proxySignals(ctx, p, ct.ID)
		defer stopProxy()
	}
	res := <-attached
	if res.detached {
		return -1, nil
	}
	if res.err != nil {
		if !errdefs.IsInvalidState(res.err) {
			return 0, res.err
		}
		// The process ended before the attach reached it: its output is
		// all in the log.
		if err := printLogs(ctx, p, ct.ID, api.LogsOptions{Tail: -1}, false); err != nil {
			return 0, err
		}
	}
	st, err := p.lc.Wait(ctx, ct.ID)
	if err != nil {
		return 0, err
	}
	return st.Code, nil
}

// startFailureCode is docker run's exit code for a command that cannot
// start (the isolation layer finds out at create): 127 when it is missing,
// 126 when it cannot be executed; 0 for other errors.
func startFailureCode(err error) int {
	msg := err.Error()
	if !strings.Contains(msg, "exec") {
		return 0
	}
	switch {
	case strings.Contains(msg, "no such file or directory"), strings.Contains(msg, "executable file not found"):
		return 127
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "exec format error"):
		return 126
	}
	return 0
}

// proxySignals forwards the signals a user sends berth to the container
// (docker's --sig-proxy), until the returned stop is called.
func proxySignals(ctx context.Context, p *publicAPI, id string) func() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		interrupts := 0
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				if s == syscall.SIGINT {
					// A process that ignores SIGINT (a shell as pid 1) must not
					// hold the terminal: the third Ctrl-C leaves it running.
					if interrupts++; interrupts >= 3 {
						fmt.Fprintf(os.Stderr, "berth: left container %s running (stop it with berth stop)\n", shortID(id))
						os.Exit(130)
					}
				}
				if err := p.lc.Kill(ctx, id, s.(syscall.Signal)); err != nil {
					printErr(userError(err))
				}
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

type attachResult struct {
	detached bool
	err      error
}

func newStartCommand(g *globals) *cobra.Command {
	var attach, interactive bool
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER...",
		Short: "Start containers; with -a, attach and exit with the container's code",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				if attach || interactive {
					if len(args) != 1 {
						return errors.New("start -a/-i takes one container")
					}
					ct, err := p.lc.Get(ctx, args[0])
					if err != nil {
						return err
					}
					code, err := runAttached(ctx, p, ct, true, interactive && ct.Config.OpenStdin, ct.Config.Tty)
					if err != nil {
						return err
					}
					if code > 0 {
						return exitError(code)
					}
					return nil
				}
				return eachRef(args, func(ref string) error { _, err := p.lc.Start(ctx, ref); return err })
			})
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "attach stdout and stderr, and exit with the container's code")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "attach stdin too")
	return cmd
}

func newAttachCommand(g *globals) *cobra.Command {
	var noStdin bool
	cmd := &cobra.Command{
		Use:   "attach CONTAINER",
		Short: "Attach this terminal to a running container (Ctrl-P Ctrl-Q detaches)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := p.lc.Get(ctx, args[0])
				if err != nil {
					return err
				}
				if ct.State != lifecycle.StateRunning && ct.State != lifecycle.StatePaused {
					return fmt.Errorf("container %s is %s; only a running container can be attached to (see berth logs %s)", ct.Name, ct.State, ct.Name)
				}
				code, err := runAttached(ctx, p, ct, false, !noStdin && ct.Config.OpenStdin, ct.Config.Tty)
				if err != nil {
					return err
				}
				if code > 0 {
					return exitError(code)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "do not attach stdin")
	return cmd
}

func newExecCommand(g *globals) *cobra.Command {
	var interactive, tty, detach bool
	var env []string
	var user, workdir string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			envs, err := parseEnv(nil, env)
			if err != nil {
				return err
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				cfg := lifecycle.ExecConfig{
					Cmd: args[1:], Env: envs, User: user, WorkingDir: workdir, Tty: tty, OpenStdin: interactive,
				}
				if tty {
					cfg.ConsoleSize = terminalSize()
				}
				execID, err := p.lc.Exec(ctx, args[0], cfg)
				if err != nil {
					return err
				}
				if detach {
					return nil
				}
				res := attachProcess(ctx, p, args[0], execID, interactive, tty)
				if res.err != nil || res.detached {
					return res.err
				}
				// The exit code is the exec's own, as docker exec's.
				st, err := p.lc.WaitExec(ctx, args[0], execID)
				if err != nil {
					return err
				}
				if st.Code != 0 {
					return exitError(st.Code)
				}
				return nil
			})
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false)
	fs.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open and attached")
	fs.BoolVarP(&tty, "tty", "t", false, "give the process a terminal")
	fs.BoolVarP(&detach, "detach", "d", false, "run in the background")
	fs.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	fs.StringVarP(&user, "user", "u", "", "user[:group]")
	fs.StringVarP(&workdir, "workdir", "w", "", "working directory")
	return cmd
}

// attachProcess attaches stdio to a process (execID "" is the init) until
// its output ends. With tty and a terminal on stdin, the terminal is put in
// raw mode, resized with the window, and Ctrl-P Ctrl-Q detaches.
func attachProcess(ctx context.Context, p *publicAPI, ref, execID string, stdin, tty bool) attachResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := isolation.Streams{Stdout: os.Stdout}
	if !tty {
		streams.Stderr = os.Stderr
	}
	detached := make(chan struct{})
	var in io.Reader
	if stdin {
		in = os.Stdin
	}
	if tty {
		if stdin {
			// Keys go to the container as typed (Ctrl-C included).
			restore, err := makeRaw(os.Stdin)
			if err != nil {
				return attachResult{err: err}
			}
			defer restore()
		}
		stopResize := followWindowSize(ctx, func(size isolation.ConsoleSize) {
			_ = p.lc.Resize(ctx, ref, execID, size)
		})
		defer stopResize()
		if in != nil && isTerminal(os.Stdin) {
			in = &detachReader{r: in, onDetach: func() { close(detached); cancel() }}
		}
	}
	streams.Stdin = in
	err := p.lc.Attach(ctx, ref, execID, streams)
	select {
	case <-detached:
		return attachResult{detached: true}
	default:
	}
	return attachResult{err: err}
}

// detachReader passes stdin through until the detach keys Ctrl-P Ctrl-Q,
// which call onDetach; it then blocks, so the process's stdin stays open.
type detachReader struct {
	r        io.Reader
	pending  bool // a Ctrl-P waits for its next byte
	onDetach func()
}

func (d *detachReader) Read(p []byte) (int, error) {
	if len(p) < 2 {
		return d.r.Read(p)
	}
	buf := make([]byte, len(p)-1) // room for a held Ctrl-P
	n, err := d.r.Read(buf)
	out := p[:0]
	for _, b := range buf[:n] {
		if d.pending {
			d.pending = false
			if b == 0x11 {
				d.onDetach()
				select {} // the attach ends; berth exits
			}
			out = append(out, 0x10)
		}
		if b == 0x10 {
			d.pending = true
			continue
		}
		out = append(out, b)
	}
	return len(out), err
}

func printErr(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
	}
}
