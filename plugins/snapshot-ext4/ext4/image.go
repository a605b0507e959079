package ext4

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/internal/clonetree"
	"github.com/berth-dev/berth/sdk/snapshot/dirsnap"
)

// Disk formats, as the mount descriptor's "format=" option names them.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// tools runs the external programs: mkfs.ext4 (e2fsprogs) always,
// qemu-img for qcow2 overlays.
type tools struct {
	mkfsPath string
	qemuImg  string
}

// run runs a tool and returns its error with its output.
func run(ctx context.Context, prog string, args ...string) error {
	cmd := exec.CommandContext(ctx, prog, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(prog), strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// mkfs writes a new ext4 image of size bytes at out (which must not exist)
// holding tree ("" for an empty filesystem), then syncs it.
//
// mke2fs -d copies the tree's files, directories, symlinks, device nodes,
// FIFOs, hardlinks, owners, modes, times and xattrs without mounting
// anything and without root. Options:
//   - the file is created sparse first, so mke2fs discards it (punching
//     holes zeroes it) and can mark the inode tables zeroed
//     (lazy_itable_init=0 then costs nothing here and writes zeros only
//     where discard does not work): the guest kernel has no lazy inode
//     table zeroing to do, which would otherwise write ~16 MiB per GiB
//     into every container's copy-on-write image;
//   - lazy_journal_init=1: the journal of a fresh sparse file is already
//     zeros; writing it would cost 64 MiB per image;
//   - root_owner=0:0 and -m 0 (no blocks reserved for root: the whole
//     image is the container's);
//   - features: mke2fs's ext4 defaults (e2fsprogs 1.47: extents, 64bit,
//     flex_bg, metadata_csum, huge_file, dir_nlink, extra_isize, and
//     orphan_file on newer hosts), all of which Linux ≥ 5.15 — the guest's
//     6.1 included — mounts read-write.
func (t *tools) mkfs(ctx context.Context, tree, out string, size int64) error {
	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(out)
		return err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-I", "256",
		"-E", "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=1", "-L", "berth"}
	if tree != "" {
		args = append(args, "-d", tree)
	}
	args = append(args, out, strconv.FormatInt(size/1024, 10)+"k")
	if err := run(ctx, t.mkfsPath, args...); err != nil {
		_ = os.Remove(out)
		return err
	}
	return syncFile(out)
}

// overlay creates a qcow2 image at out whose unwritten clusters read from
// the raw image backing (absolute path), with backing's size (written in
// Go: see writeOverlay).
func (t *tools) overlay(_ context.Context, backing, out string) error {
	st, err := os.Stat(backing)
	if err != nil {
		return err
	}
	return writeOverlay(backing, out, st.Size())
}

// reflink makes dst a copy-on-write clone of src (FICLONE on Linux,
// clonefile on darwin); it fails where the filesystem cannot.
func reflink(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return clonetree.Platform().Clone(f, dst)
}

// probeReflink reports whether files in dir can be reflinked.
func probeReflink(dir string) bool {
	src, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		return false
	}
	defer os.Remove(src.Name())
	_, _ = src.Write(make([]byte, 4096))
	_ = src.Close()
	dst := src.Name() + ".clone"
	err = reflink(src.Name(), dst)
	_ = os.Remove(dst)
	return err == nil
}

// imageSize is the size of an image holding tree: the configured floor, or
// more when the content needs it (its allocated bytes + 25% + 128 MiB for
// the journal and metadata, and one 16 KiB inode ratio slot per inode with
// 25% to spare).
func imageSize(ctx context.Context, tree string, floor int64) (int64, error) {
	if tree == "" {
		return floor, nil
	}
	u, err := dirsnap.DiskUsage(ctx, tree)
	if err != nil {
		return 0, err
	}
	need := max(u.Size+u.Size/4+128<<20, (u.Inodes+u.Inodes/4)*16384, floor)
	return (need + 1<<20 - 1) &^ (1<<20 - 1), nil
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// stamp identifies a disk file's state: any write to it (a VM, a loop
// mount) changes its mtime.
type stamp struct {
	Size  int64 `json:"size"`
	MTime int64 `json:"mtime_ns"`
}

func stampOf(p string) (stamp, error) {
	st, err := os.Stat(p)
	if err != nil {
		return stamp{}, err
	}
	return stamp{Size: st.Size(), MTime: st.ModTime().UnixNano()}, nil
}

// since is a log helper.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
