// Command unpackbench is the Berth side of the unpack benchmark (make
// bench, bench/benchmarks.go):
//
//	unpackbench gen LAYOUT            write the benchmark's OCI layout (~50 MB, 5 layers)
//	unpackbench unpack LAYOUT STATE   unpack it with core/unpack into snapshot-overlay at STATE
//
// Its peer is `umoci raw unpack` of the same layout.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/berth-dev/berth/core/unpack"
	"github.com/berth-dev/berth/core/unpack/internal/testimage"
	"github.com/berth-dev/berth/plugins/snapshot-overlay/overlay"
	"github.com/berth-dev/berth/sdk/plugin"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "unpackbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "gen":
		img, err := testimage.Image(testimage.Bulk(5, 50<<20)...)
		if err != nil {
			return err
		}
		return testimage.WriteLayout(args[1], img)
	case len(args) == 3 && args[0] == "unpack":
		img, err := testimage.ReadLayout(args[1])
		if err != nil {
			return err
		}
		ls, err := img.Layers()
		if err != nil {
			return err
		}
		// Diff IDs come from the config: a layer's DiffID method would
		// decompress the whole blob to compute it.
		cfg, err := img.ConfigFile()
		if err != nil {
			return err
		}
		if len(cfg.RootFS.DiffIDs) != len(ls) {
			return fmt.Errorf("the image config lists %d diff IDs for %d layers", len(cfg.RootFS.DiffIDs), len(ls))
		}
		var layers []unpack.Layer
		for i, l := range ls {
			mt, _ := l.MediaType()
			dg, _ := l.Digest()
			size, _ := l.Size()
			layers = append(layers, unpack.Layer{MediaType: string(mt), Digest: dg.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), Size: size, Open: l.Compressed})
		}
		sn := overlay.New(nil)
		ctx := context.Background()
		if err := sn.Configure(ctx, plugin.ConfigureRequest{StateDir: args[2]}); err != nil {
			return err
		}
		defer sn.Close()
		_, err = unpack.Unpack(ctx, sn, layers, unpack.Options{})
		return err
	}
	return fmt.Errorf("usage: unpackbench gen LAYOUT | unpackbench unpack LAYOUT STATE")
}
