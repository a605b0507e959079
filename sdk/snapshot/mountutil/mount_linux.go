package mountutil

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/mount"
)

type flagOption struct {
	flag  uintptr
	clear bool
}

var flagOptions = map[string]flagOption{
	"ro":          {flag: unix.MS_RDONLY},
	"rw":          {flag: unix.MS_RDONLY, clear: true},
	"bind":        {flag: unix.MS_BIND},
	"rbind":       {flag: unix.MS_BIND | unix.MS_REC},
	"nosuid":      {flag: unix.MS_NOSUID},
	"nodev":       {flag: unix.MS_NODEV},
	"noexec":      {flag: unix.MS_NOEXEC},
	"noatime":     {flag: unix.MS_NOATIME},
	"relatime":    {flag: unix.MS_RELATIME},
	"strictatime": {flag: unix.MS_STRICTATIME},
	"sync":        {flag: unix.MS_SYNCHRONOUS},
	"private":     {flag: unix.MS_PRIVATE},
	"rprivate":    {flag: unix.MS_PRIVATE | unix.MS_REC},
}

// Mount performs m on target (an absolute directory path; m.Target is the
// caller's business). Bind mounts that ask for "ro" are remounted
// read-only, as mount(8) does.
func Mount(m mount.Mount, target string) error {
	flags, data := Options(m.Options)
	switch m.Type {
	case "bind", "rbind":
		if err := unix.Mount(m.Source, target, "", flags|unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount %s on %s: %w", m.Source, target, err)
		}
		if flags&unix.MS_RDONLY != 0 {
			if err := unix.Mount("", target, "", flags|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
				_ = unix.Unmount(target, unix.MNT_DETACH)
				return fmt.Errorf("make bind mount %s read-only: %w", target, err)
			}
		}
		return nil
	}
	dir, opts := CompactLowerdirs(m.Options)
	if dir == "" {
		if err := unix.Mount(m.Source, target, m.Type, flags, data); err != nil {
			return fmt.Errorf("mount %s (%s) on %s: %w", m.Type, m.Source, target, err)
		}
		return nil
	}
	flags, data = Options(opts)
	if err := mountFrom(dir, m.Source, target, m.Type, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s, lowerdirs relative to %s) on %s: %w", m.Type, m.Source, dir, target, err)
	}
	return nil
}

// mountFrom calls mount(2) with dir as the working directory, on a thread
// of its own that unshares its filesystem attributes first, so the rest of
// the process keeps its working directory. The thread is never returned to
// the Go scheduler: it exits when the goroutine does.
func mountFrom(dir, source, target, fstype string, flags uintptr, data string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare the working directory: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(source, target, fstype, flags, data)
	}()
	return <-errc
}

// Unmount unmounts target, retrying while it is busy for up to 10 seconds
// and detaching it after that. An unmounted target is not an error.
func Unmount(target string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY) && time.Now().Before(deadline):
			time.Sleep(50 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(target, unix.MNT_DETACH); derr != nil {
				return fmt.Errorf("unmount %s: %w (detach: %v)", target, err, derr)
			}
			return nil
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// MountAll performs mounts in order on target (each at its Target below
// it) and returns a function that unmounts them in reverse order.
func MountAll(mounts []mount.Mount, target string) (func() error, error) {
	var done []string
	unmount := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			errs = append(errs, Unmount(done[i]))
		}
		done = nil
		return errors.Join(errs...)
	}
	for _, m := range mounts {
		t := target
		if m.Target != "" && m.Target != "/" {
			t = target + "/" + m.Target
		}
		if err := Mount(m, t); err != nil {
			return nil, errors.Join(err, unmount())
		}
		done = append(done, t)
	}
	return unmount, nil
}
