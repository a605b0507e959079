//go:build linux

package ext4

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/snapshottest"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// chainLayers returns ten layers of 40 incompressible 128 KiB files each
// (5 MiB per layer, 50 MiB in all), with their diff IDs.
func chainLayers() (layers [][]byte, diffIDs []string) {
	r := rand.NewChaCha8([32]byte{10})
	for l := range 10 {
		files := map[string]string{fmt.Sprintf("l%d/", l): ""}
		for f := range 40 {
			b := make([]byte, 128<<10)
			_, _ = r.Read(b)
			files[fmt.Sprintf("l%d/f%02d", l, f)] = string(b)
		}
		raw, id := layerTar(files)
		layers, diffIDs = append(layers, raw), append(diffIDs, id)
	}
	return layers, diffIDs
}

// buildChain unpacks the ten layers as chain c0..c9 and returns the time
// each layer took.
func buildChain(tb testing.TB, sn *Snapshotter, prefix string, layers [][]byte, diffIDs []string, opts ...snapshot.Opt) []time.Duration {
	ctx := context.Background()
	var took []time.Duration
	parent := ""
	for i, raw := range layers {
		start := time.Now()
		key, name := fmt.Sprintf("%s-x%d", prefix, i), fmt.Sprintf("%s-c%d", prefix, i)
		if _, err := sn.Prepare(ctx, key, parent, opts...); err != nil {
			tb.Fatal(err)
		}
		if _, err := sn.Apply(ctx, key, snapshot.Layer{MediaType: mediaTar, DiffID: diffIDs[i]}, bytes.NewReader(raw)); err != nil {
			tb.Fatal(err)
		}
		if err := sn.Commit(ctx, name, key); err != nil {
			tb.Fatal(err)
		}
		took = append(took, time.Since(start))
		parent = name
	}
	return took
}

// TestMeasureChainAndPrepare measures (and logs; it asserts no timing) on
// both copy-on-write paths: unpacking a 10-layer, 50 MiB chain, with
// extraction snapshots labelled LabelUnpack as core/unpack makes them (each
// layer: a clone of the chain's tree and the layer; one mkfs at the end)
// and without (as lifecycle-local's own unpack makes them today: each
// layer also runs mkfs.ext4 -d of the whole tree), a bare mkfs.ext4 -d of
// the final tree for reference, and Prepare of a container on the top of
// the chain. Run with -v to see the numbers.
func TestMeasureChainAndPrepare(t *testing.T) {
	if os.Getenv("BERTH_EXT4_MEASURE") == "" {
		t.Skip("a measurement (~40 s): run with BERTH_EXT4_MEASURE=1 -v")
	}
	layers, diffIDs := chainLayers()
	for _, cow := range []string{CowQcow2, CowReflink} {
		t.Run(cow, func(t *testing.T) {
			var dir string
			if cow == CowReflink {
				dir = snapshottest.XFSLoop(t, 4096)
			} else {
				dir = t.TempDir()
			}
			sn := configure(t, dir, map[string]string{"copy_on_write": cow})
			ctx := context.Background()
			for _, labelled := range []bool{true, false} {
				prefix, opts := "eager", []snapshot.Opt(nil)
				if labelled {
					prefix, opts = "lazy", []snapshot.Opt{snapshot.WithLabels(map[string]string{LabelUnpack: "x"})}
				}
				took := buildChain(t, sn, prefix, layers, diffIDs, opts...)
				var total time.Duration
				for _, d := range took {
					total += d
				}
				top := prefix + "-c9"
				start := time.Now()
				if _, err := sn.Prepare(ctx, prefix+"-first", top); err != nil {
					t.Fatal(err)
				}
				first := time.Since(start)
				const n = 10
				start = time.Now()
				for i := range n {
					if _, err := sn.Prepare(ctx, fmt.Sprint(prefix, "-ctr", i), top); err != nil {
						t.Fatal(err)
					}
				}
				prep := time.Since(start) / n
				t.Logf("%s, unpack label %v: 10-layer 50 MiB chain unpacked in %s (first layer %s, last %s); first container Prepare %s (builds the image if the unpack did not), next ones %s",
					cow, labelled, total.Round(time.Millisecond), took[0].Round(time.Millisecond), took[9].Round(time.Millisecond), first.Round(time.Millisecond), prep.Round(time.Microsecond))
			}
			e, _ := sn.env()
			st, _ := e.get("lazy-c9")
			tree := filepath.Join(e.current(st.ID), "fs")
			size, _ := imageSize(ctx, tree, e.set.sizeBytes)
			start := time.Now()
			if err := e.tools.mkfs(ctx, tree, filepath.Join(t.TempDir(), "ref.raw"), size); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: mkfs.ext4 -d of the final 50 MiB tree alone: %s", cow, time.Since(start).Round(time.Millisecond))
		})
	}
}
