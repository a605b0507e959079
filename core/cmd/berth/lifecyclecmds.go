package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

func newRenameCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return p.lc.Rename(ctx, args[0], args[1])
			})
		},
	}
}

func newCheckpointCommand(g *globals) *cobra.Command {
	var leaveRunning bool
	cmd := &cobra.Command{
		Use:   "checkpoint CONTAINER",
		Short: "Save a running or paused container's processes to disk (stops it unless --leave-running)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := p.lc.Checkpoint(ctx, args[0], leaveRunning)
				if err != nil {
					return err
				}
				fmt.Printf("%s checkpointed (now %s)\n", ct.Name, ct.State)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&leaveRunning, "leave-running", false, "keep the container running after the checkpoint")
	return cmd
}

func newRestoreCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore CONTAINER",
		Short: "Run a checkpointed container again from its checkpoint",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := p.lc.Restore(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Printf("%s restored (now %s)\n", ct.Name, ct.State)
				return nil
			})
		},
	}
}

// updateFlags are `berth update`'s flags; only the ones given change.
type updateFlags struct {
	cpus                  float64
	cpuShares             uint64
	cpusetCPUs, cpusetMem string
	memory, memoryRes     string
	pidsLimit             int64
	memorySwap            string
	deviceReadBPS         []string
	deviceWriteBPS        []string
	blkioWeight           uint16
	restart               string
}

// register adds update's flags to fs.
func (f *updateFlags) register(fs *pflag.FlagSet) {
	fs.Float64Var(&f.cpus, "cpus", 0, "CPU quota in CPUs (1.5 = one and a half; 0 removes it)")
	fs.Uint64VarP(&f.cpuShares, "cpu-shares", "c", 0, "relative CPU weight (1024 is the default)")
	fs.StringVar(&f.cpusetCPUs, "cpuset-cpus", "", "CPUs the container may use (0-1,3)")
	fs.StringVar(&f.cpusetMem, "cpuset-mems", "", "memory nodes the container may use")
	fs.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 64m, 1g)")
	fs.StringVar(&f.memoryRes, "memory-reservation", "", "soft memory limit")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "process and thread limit (-1 unlimited)")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "memory plus swap limit; -1 is unlimited swap")
	fs.StringArrayVar(&f.deviceReadBPS, "device-read-bps", nil, "read rate limit DEVICE:RATE (e.g. /dev/sda:1mb)")
	fs.StringArrayVar(&f.deviceWriteBPS, "device-write-bps", nil, "write rate limit DEVICE:RATE")
	fs.Uint16Var(&f.blkioWeight, "blkio-weight", 0, "block IO weight (not supported: the resources contract has none)")
	fs.StringVar(&f.restart, "restart", "", "restart policy: no, on-failure[:N], always, unless-stopped")
}

// apply changes the limits the user gave flags for.
func (f *updateFlags) apply(c *cobra.Command, l *resources.Limits) error {
	changed := c.Flags().Changed
	if changed("cpus") {
		if f.cpus < 0 {
			return fmt.Errorf("--cpus %v: must not be negative", f.cpus)
		}
		l.CPUs = f.cpus
	}
	if changed("cpu-shares") {
		l.CPUShares = f.cpuShares
	}
	if changed("cpuset-cpus") {
		l.CPUSetCPUs = f.cpusetCPUs
	}
	if changed("cpuset-mems") {
		l.CPUSetMems = f.cpusetMem
	}
	if changed("memory") {
		n, err := parseBytesFlag("memory", f.memory)
		if err != nil {
			return err
		}
		l.MemoryBytes = n
	}
	if changed("memory-reservation") {
		n, err := parseBytesFlag("memory-reservation", f.memoryRes)
		if err != nil {
			return err
		}
		l.MemorySoftBytes = n
	}
	if changed("pids-limit") {
		l.Pids = f.pidsLimit
	}
	if changed("memory-swap") {
		// Docker's --memory-swap is memory plus swap; Limits counts the
		// swap beyond memory (0 is Docker's default: as much again).
		switch f.memorySwap {
		case "-1":
			l.SwapBytes = -1
		default:
			total, err := parseBytesFlag("memory-swap", f.memorySwap)
			if err != nil {
				return err
			}
			if l.MemoryBytes == 0 || total < l.MemoryBytes {
				return fmt.Errorf("--memory-swap %s: needs a memory limit (--memory, now or set before), and must be at least as large", f.memorySwap)
			}
			if total == l.MemoryBytes {
				return fmt.Errorf("--memory-swap %s equal to the memory limit (no swap) cannot be expressed yet: the resources contract reads 0 swap as Docker's default", f.memorySwap)
			}
			l.SwapBytes = total - l.MemoryBytes
		}
	}
	if changed("device-read-bps") || changed("device-write-bps") {
		// The contract has one IO device: a rate given alone must name the
		// device the other rate already limits.
		dev := l.IODevice
		if changed("device-read-bps") && changed("device-write-bps") {
			dev = ""
		}
		var err error
		if changed("device-read-bps") {
			if l.IODevice, l.IOReadBPS, err = parseDeviceRate("device-read-bps", f.deviceReadBPS, dev); err != nil {
				return err
			}
			dev = l.IODevice
		}
		if changed("device-write-bps") {
			if l.IODevice, l.IOWriteBPS, err = parseDeviceRate("device-write-bps", f.deviceWriteBPS, dev); err != nil {
				return err
			}
		}
	}
	return nil
}

var updateFlagNames = []string{"cpus", "cpu-shares", "cpuset-cpus", "cpuset-mems", "memory", "memory-reservation", "pids-limit", "memory-swap", "device-read-bps", "device-write-bps"}

func newUpdateCommand(g *globals) *cobra.Command {
	var f updateFlags
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] CONTAINER...",
		Short: "Change the resource limits of containers (at once for running ones)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if c.Flags().Changed("blkio-weight") {
				return errors.New("update --blkio-weight: not supported: the resources contract has no IO weight (only --device-read-bps and --device-write-bps rates)")
			}
			limitsGiven := slices.ContainsFunc(updateFlagNames, c.Flags().Changed)
			if !limitsGiven && !c.Flags().Changed("restart") {
				return errors.New("update: give at least one limit to change (--cpus, --cpu-shares, --cpuset-cpus, --cpuset-mems, --memory, --memory-reservation, --memory-swap, --device-read-bps, --device-write-bps, --pids-limit) or --restart")
			}
			// Flags are checked before any container changes.
			if err := f.apply(c, &resources.Limits{MemoryBytes: 1}); err != nil {
				return err
			}
			var policy lifecycle.RestartPolicy
			if c.Flags().Changed("restart") {
				var err error
				if policy, err = parseRestart(f.restart); err != nil {
					return err
				}
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error {
					ct, err := p.lc.Get(ctx, ref)
					if err != nil {
						return err
					}
					if limitsGiven {
						limits := ct.Config.Limits
						if err := f.apply(c, &limits); err != nil {
							return err
						}
						if _, err = p.lc.Update(ctx, ct.ID, limits); err != nil {
							return err
						}
					}
					if c.Flags().Changed("restart") {
						_, err = p.lc.SetRestartPolicy(ctx, ct.ID, policy)
					}
					return err
				})
			})
		},
	}
	f.register(cmd.Flags())
	return cmd
}
