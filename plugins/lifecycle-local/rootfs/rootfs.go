// Package rootfs reaches into a container's filesystem from the host for
// lifecycle-local's cp, export and volume copy-up: it writes a path under a
// root as a tar, extracts a tar into a directory under a root, and mounts a
// snapshot's mounts in a private directory for containers that do not run.
//
// A root is a host path that is the container's "/": /proc/<pid>/root of
// a running sandbox container's init, or the mount point of its rootfs.
// Every path a caller gives is resolved inside the root (symlinks
// included, with openat2 RESOLVE_IN_ROOT through filepath-securejoin), and
// the walk below it opens each entry relative to its parent's descriptor
// without following symlinks, so nothing the container changes meanwhile
// (a directory swapped for a symlink to /etc) leads outside the root.
package rootfs

import "github.com/berth-dev/berth/sdk/errdefs"

// TarOptions control WriteTar.
type TarOptions struct {
	// Name is the name of the top entry, and the prefix of those below
	// it; empty writes only the content of a directory, named relative to
	// it (as docker cp SRC/. and docker export do).
	Name string
	// Skip, when set, is asked about every path below the top (as a path
	// inside the root, "/etc/hosts"); a skipped directory keeps its own
	// entry but none of its content. Callers skip mount points.
	Skip func(path string) bool
}

// Bind is a host path (a volume's data, a bind's source) a container has
// mounted at Destination.
type Bind struct {
	Source, Destination string
	ReadOnly            bool
}

var errUnsupported = errdefs.NotImplemented("reaching into a container's files is implemented on Linux only")
