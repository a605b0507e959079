// Package mountutil performs the mount descriptors snapshotters return
// (sdk/mount), for isolation plugins and for tests, on Linux.
//
// Deep images: the options of one mount(2) call must fit in a page (4096
// bytes), and 128 absolute lowerdirs do not. As containerd does, Mount then
// rewrites the lowerdirs relative to their common parent directory and
// performs the mount from a thread whose working directory is that parent
// (CompactLowerdirs gives the rewrite to callers that mount by themselves,
// e.g. a container init that may chdir freely). Descriptors keep absolute
// paths; only the performer compacts.
package mountutil

import (
	"path/filepath"
	"strings"
)

// pageLimit is how long the data of one mount(2) call may be: a page, less
// a margin (containerd keeps 512 bytes).
const pageLimit = 4096 - 512

// Options splits descriptor options into mount(2) flags and the data string.
func Options(opts []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range opts {
		if f, ok := flagOptions[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}

// CompactLowerdirs returns, when the data of m's options would not fit in
// one mount(2) call, the directory to chdir into and the options with every
// lowerdir relative to it; otherwise "" and the options unchanged. It
// returns "" too when the lowerdirs share no parent below "/".
func CompactLowerdirs(opts []string) (string, []string) {
	_, data := Options(opts)
	if len(data) < pageLimit {
		return "", opts
	}
	var lower []string
	idx := -1
	for i, o := range opts {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			lower = strings.Split(v, ":")
			idx = i
		}
	}
	if len(lower) < 2 {
		return "", opts
	}
	common := filepath.Dir(lower[0])
	for _, l := range lower[1:] {
		for !strings.HasPrefix(l, common+"/") {
			common = filepath.Dir(common)
			if common == "/" || common == "." {
				return "", opts
			}
		}
	}
	rel := make([]string, len(lower))
	for i, l := range lower {
		rel[i] = strings.TrimPrefix(l, common+"/")
	}
	out := append([]string(nil), opts...)
	out[idx] = "lowerdir=" + strings.Join(rel, ":")
	return common, out
}
