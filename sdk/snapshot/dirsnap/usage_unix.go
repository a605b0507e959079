//go:build unix

package dirsnap

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/sdk/snapshot"
)

// DiskUsage is du of dir: allocated bytes and inodes, hardlinks counted
// once. (Extents a reflink clone shares with another tree are counted here
// too: only the filesystem's free space shows sharing.)
func DiskUsage(ctx context.Context, dir string) (snapshot.Usage, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]struct{}{}
	var u snapshot.Usage
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		k := ino{uint64(st.Dev), uint64(st.Ino)}
		if _, ok := seen[k]; ok {
			return nil
		}
		seen[k] = struct{}{}
		u.Inodes++
		u.Size += int64(st.Blocks) * 512
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	return u, err
}

// copyDirMeta gives dst the mode, owner, xattrs and times of directory src.
func copyDirMeta(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if err := unix.Chmod(dst, uint32(st.Mode)&0o7777); err != nil {
		return err
	}
	return unix.UtimesNano(dst, []unix.Timespec{st.Atim, st.Mtim})
}
