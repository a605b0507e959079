//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzApply decodes its input into one or two layers of hostile entries
// (climbing names, symlinks to outside directories, hardlinks, whiteouts)
// and applies them to a root that has canaries beside it. Whatever the
// layers are, nothing outside the root may change. The seeds run as part of
// every `go test`; `make test` also fuzzes it briefly.
func FuzzApply(f *testing.F) {
	seeds := [][]byte{
		{0, 0, 3, 0, 1, 1, 2},
		{0, 2, 2, 0, 1, 0, 2, 0, 2},
		{1, 2, 2, 5, 0, 0, 1, 2, 0, 0},
		{0, 3, 1, 0, 4, 2, 0, 6, 0, 4, 1, 1},
		{1, 0, 1, 0, 6, 2, 0, 2, 2, 1, 2, 3, 0, 7},
		{0, 4, 1, 9, 5, 2, 2, 3, 0, 0},
		{0, 2, 2, 2, 3, 6, 1, 3, 0, 2, 2},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		mode := WhiteoutDelete
		if data[0]%2 == 1 {
			if !isRoot() {
				return // overlay whiteouts need root
			}
			mode = WhiteoutOverlay
		}
		outside, root := sandbox(t)
		layers := decodeLayers(data[1:], outside)
		before := outsideOf(snapshotTree(t, outside))
		for _, l := range layers {
			// Errors are expected; escapes are not.
			_, _ = Apply(context.Background(), root, bytes.NewReader(layerTar(t, l...)), Options{Whiteouts: mode})
		}
		after := outsideOf(snapshotTree(t, outside))
		if d := diffTrees(before, after); d != "" {
			t.Fatalf("layers %+v changed things outside the root:\n%s", layers, d)
		}
	})
}

func outsideOf(tree map[string]string) map[string]string {
	for k := range tree {
		if k == "root" || strings.HasPrefix(k, "root/") {
			delete(tree, k)
		}
	}
	return tree
}

// decodeLayers reads ops of three bytes: kind, name, target. Kind 7 starts
// the second layer.
func decodeLayers(data []byte, outside string) [][]entry {
	names := []string{"a", "a/b", "etc", "etc/passwd", "..", "../victim", "lnk", "lnk/x", "a/../..", "/etc/shadow", ".", "lnk/.wh.victim", "a/.wh..wh..opq", "./a/b/c", "../etc"}
	targets := []string{"/etc", outside, filepath.Join(outside, "etc"), "..", "../..", "../etc", "a", "lnk", "/", "etc/passwd", "../victim", "a/b"}
	var layers [][]entry
	cur := []entry{}
	for i := 0; i+2 < len(data) && len(cur) < 32; i += 3 {
		name := names[int(data[i+1])%len(names)]
		target := targets[int(data[i+2])%len(targets)]
		switch data[i] % 8 {
		case 0:
			cur = append(cur, file(name, "pwned"))
		case 1:
			cur = append(cur, dir(name+"/"))
		case 2:
			cur = append(cur, symlink(name, target))
		case 3:
			cur = append(cur, hardlink(name, names[int(data[i+2])%len(names)]))
		case 4:
			d, b := filepath.Split(name)
			cur = append(cur, file(d+".wh."+b, ""))
		case 5:
			cur = append(cur, file(filepath.Join(name, whiteoutOpaque), ""))
		case 6:
			cur = append(cur, entry{name: name, typ: tar.TypeFifo, mode: 0o600})
		case 7:
			layers = append(layers, cur)
			cur = []entry{}
		}
	}
	return append(layers, cur)
}
