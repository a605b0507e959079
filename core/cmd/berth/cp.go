package main

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/archive"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// newCpCommand is `berth cp`, docker cp's rules: a tar stream through the
// public API each way. The container's side resolves paths inside the
// container's root; this side extracts with the hardened layer applier,
// so a container cannot write outside the destination either.
func newCpCommand(g *globals) *cobra.Command {
	var archiveMode, followLink bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n  berth cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files between a container and the host",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			srcCtr, srcPath := splitCpArg(args[0])
			dstCtr, dstPath := splitCpArg(args[1])
			switch {
			case srcCtr != "" && dstCtr != "":
				return errors.New("cp: copying between two containers is not supported; copy to the host first")
			case srcCtr == "" && dstCtr == "":
				return errors.New("cp: one of the paths must name a container (CONTAINER:PATH)")
			case srcPath == "" || dstPath == "":
				return errors.New("cp: empty path; a container's root is CONTAINER:/")
			}
			if srcCtr != "" && followLink {
				return errors.New("cp -L: following a symlink is supported for a host SRC_PATH only")
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				if srcCtr != "" {
					return copyFromContainer(ctx, p.lc, srcCtr, srcPath, dstPath)
				}
				return copyToContainer(ctx, p.lc, srcPath, dstCtr, dstPath, archiveMode, followLink)
			})
		},
	}
	cmd.Flags().BoolVarP(&archiveMode, "archive", "a", false, "keep the files' owners (by default they belong to the container's root)")
	cmd.Flags().BoolVarP(&followLink, "follow-link", "L", false, "copy what a symlink SRC_PATH (on the host) points to")
	return cmd
}

// splitCpArg splits CONTAINER:PATH; a path with a ':' before any '/' names
// a container (write ./a:b for a local file named a:b), as docker cp.
func splitCpArg(arg string) (ctr, p string) {
	if filepath.IsAbs(arg) || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	i := strings.Index(arg, ":")
	if i <= 0 || strings.Contains(arg[:i], "/") {
		return "", arg
	}
	return arg[:i], arg[i+1:]
}

// copyContents reports whether a source path asks for a directory's
// content rather than the directory (SRC/. in docker cp).
func copyContents(p string) bool {
	return p == "." || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, string(filepath.Separator)+".")
}

// statInContainer reports whether ctrPath exists in the container and is
// a directory, from the first entry of its archive (the rest is not
// read).
func statInContainer(ctx context.Context, lc *lifecycle.Client, ctr, ctrPath string) (exists, dir bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(lc.CopyFrom(sctx, ctr, ctrPath, pw)) }()
	defer pr.Close()
	h, err := tar.NewReader(pr).Next()
	switch {
	case errdefs.IsNotFound(err):
		return false, false, nil
	case err != nil:
		return false, false, err
	}
	return true, h.Typeflag == tar.TypeDir, nil
}

// copyFromContainer copies ctr:src to the host's dst ("-": the tar to
// stdout).
func copyFromContainer(ctx context.Context, lc *lifecycle.Client, ctr, src, dst string) error {
	if dst == "-" {
		return lc.CopyFrom(ctx, ctr, src, os.Stdout)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := lc.CopyFrom(sctx, ctr, src, pw)
		errc <- err
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	tr := tar.NewReader(pr)
	first, err := tr.Next()
	if err != nil {
		if err == io.EOF {
			err = <-errc
		}
		return fmt.Errorf("copy %s:%s: %w", ctr, src, err)
	}
	srcIsDir := first.Typeflag == tar.TypeDir
	top := strings.TrimSuffix(first.Name, "/")

	// Where the entries go: root is an existing host directory, and the
	// top entry is renamed to name there ("" puts a directory's content
	// straight into root).
	root, name := "", ""
	st, serr := os.Stat(dst)
	switch {
	case serr == nil && st.IsDir():
		root, name = dst, path.Base(top)
		if srcIsDir && copyContents(src) {
			name = ""
		}
		if top == "." && name == "." { // the container's root
			name = ""
		}
	case serr == nil && srcIsDir:
		return fmt.Errorf("cp: cannot copy directory %s:%s onto file %s", ctr, src, dst)
	case serr == nil: // a file overwritten
		root, name = filepath.Dir(dst), filepath.Base(dst)
	case errors.Is(serr, fs.ErrNotExist):
		if !srcIsDir && strings.HasSuffix(dst, string(filepath.Separator)) {
			return fmt.Errorf("cp: destination directory %s does not exist", dst)
		}
		root, name = filepath.Dir(filepath.Clean(dst)), filepath.Base(filepath.Clean(dst))
		if pst, err := os.Stat(root); err != nil || !pst.IsDir() {
			return fmt.Errorf("cp: destination directory %s does not exist", root)
		}
	default:
		return serr
	}
	// The entries are renamed, given the caller's ownership (docker cp),
	// and checked to stay below the top entry; the applier then refuses
	// anything that would leave root.
	rpr, rpw := io.Pipe()
	go func() {
		rpw.CloseWithError(renameEntries(tar.NewWriter(rpw), tr, first, top, name))
	}()
	_, aerr := archive.Apply(ctx, root, rpr, archive.Options{})
	_ = rpr.CloseWithError(errors.New("extraction ended"))
	cancel()
	if werr := <-errc; werr != nil && !errors.Is(werr, context.Canceled) && aerr == nil {
		return fmt.Errorf("copy %s:%s: %w", ctr, src, werr)
	}
	if aerr != nil {
		return fmt.Errorf("copy %s:%s to %s: %w", ctr, src, dst, aerr)
	}
	return nil
}

// whiteoutPrefix starts the names the layer applier reads as deletions
// (OCI whiteouts); such files are not copied to the host.
const whiteoutPrefix = ".wh."

// renameEntries copies the archive whose first header is first (already
// read from tr) to out, renaming its top component top to name ("" drops
// it: the content goes to the root) and owning every entry by the caller.
func renameEntries(out *tar.Writer, tr *tar.Reader, first *tar.Header, top, name string) error {
	uid, gid := os.Getuid(), os.Getgid()
	h := first
	for {
		rel := strings.TrimSuffix(h.Name, "/")
		rest, ok := "", rel == top
		if !ok {
			rest, ok = strings.CutPrefix(rel, top+"/")
		}
		if !ok {
			return fmt.Errorf("the container sent entry %q outside %q", h.Name, top)
		}
		if strings.HasPrefix(path.Base(rel), whiteoutPrefix) {
			return fmt.Errorf("entry %q: names starting with %s cannot be copied", h.Name, whiteoutPrefix)
		}
		switch {
		case name == "" && rest == "":
			h = nil // the directory itself: root exists
		case name == "":
			h.Name = rest
		case rest == "":
			h.Name = name
		default:
			h.Name = name + "/" + rest
		}
		if h != nil {
			if h.Typeflag == tar.TypeDir {
				h.Name += "/"
			}
			if h.Typeflag == tar.TypeLink {
				target, ok := strings.CutPrefix(h.Linkname, top+"/")
				if !ok {
					return fmt.Errorf("the container sent hard link %q to %q outside %q", h.Name, h.Linkname, top)
				}
				if name != "" {
					target = name + "/" + target
				}
				h.Linkname = target
			}
			h.Uid, h.Gid, h.Uname, h.Gname = uid, gid, "", ""
			if err := out.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.Copy(out, tr); err != nil {
				return err
			}
		}
		var err error
		h, err = tr.Next()
		if err == io.EOF {
			return out.Close()
		}
		if err != nil {
			return err
		}
	}
}

// copyToContainer copies the host's src ("-": a tar from stdin) to
// ctr:dst.
func copyToContainer(ctx context.Context, lc *lifecycle.Client, src, ctr, dst string, keepOwners, follow bool) error {
	if src == "-" {
		exists, dir, err := statInContainer(ctx, lc, ctr, dst)
		if err != nil {
			return err
		}
		if !exists || !dir {
			return fmt.Errorf("cp: destination %s:%s must be an existing directory to extract a tar into", ctr, dst)
		}
		return lc.CopyTo(ctx, ctr, dst, os.Stdin)
	}
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	st, err := stat(src)
	if err != nil {
		return fmt.Errorf("cp: %w", err)
	}
	exists, dstIsDir, err := statInContainer(ctx, lc, ctr, dst)
	if err != nil {
		return err
	}
	var into, name string
	switch {
	case exists && dstIsDir:
		into, name = dst, filepath.Base(filepath.Clean(src))
		if st.IsDir() && copyContents(src) {
			name = ""
		}
	case exists && st.IsDir():
		return fmt.Errorf("cp: cannot copy directory %s onto file %s:%s", src, ctr, dst)
	case !exists && !st.IsDir() && strings.HasSuffix(dst, "/"):
		return fmt.Errorf("cp: destination directory %s:%s does not exist", ctr, dst)
	default: // a new file or directory, or a file overwritten
		clean := path.Clean("/" + dst)
		into, name = path.Dir(clean), path.Base(clean)
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeHostTar(pw, src, st, name, keepOwners))
	}()
	err = lc.CopyTo(ctx, ctr, into, pr)
	_ = pr.CloseWithError(errors.New("copy ended"))
	if err != nil {
		return fmt.Errorf("copy %s to %s:%s: %w", src, ctr, dst, err)
	}
	return nil
}

// writeHostTar writes the host's src (st is its stat: src itself, or what
// it points to with -L) as a tar whose top entry is name ("": a
// directory's content only). Symlinks below src are written as links.
// Without keepOwners every entry belongs to root (uid 0), as docker cp.
func writeHostTar(w io.Writer, src string, st fs.FileInfo, name string, keepOwners bool) error {
	t := tar.NewWriter(w)
	add := func(p string, fi fs.FileInfo, entry string) error {
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			var err error
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name, h.Format = entry, tar.FormatPAX
		if fi.IsDir() {
			h.Name += "/"
		}
		if !keepOwners {
			h.Uid, h.Gid = 0, 0
		}
		h.Uname, h.Gname = "", ""
		if err := t.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.CopyN(t, f, h.Size); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}
	if !st.IsDir() {
		if err := add(src, st, name); err != nil {
			return err
		}
		return t.Close()
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		entry := filepath.ToSlash(rel)
		switch {
		case rel == "." && name == "":
			return nil
		case rel == ".":
			entry = name
		case name != "":
			entry = name + "/" + entry
		}
		fi := st
		if rel != "." {
			if fi, err = d.Info(); err != nil {
				return err
			}
		}
		return add(p, fi, entry)
	})
	if err != nil {
		return err
	}
	return t.Close()
}
