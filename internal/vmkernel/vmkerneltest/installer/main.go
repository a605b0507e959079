// Command installer installs a kernel package into a kernel store. The
// vmkerneltest helper runs it with `go run` so that the one-time install
// (xz decoding of a ~70 MB package) runs at full speed even when the test
// that needs the kernel was built with -race.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/berth-dev/berth/internal/vmkernel"
)

func main() {
	store := flag.String("store", "", "kernel store directory")
	debPath := flag.String("deb", "", "kernel .deb to install")
	arch := flag.String("arch", "", "amd64 or arm64")
	flag.Parse()
	if *store == "" || *debPath == "" {
		fmt.Fprintln(os.Stderr, "usage: installer -store DIR -deb FILE [-arch ARCH]")
		os.Exit(2)
	}
	s := &vmkernel.Store{Dir: *store}
	k, err := s.Install(context.Background(), vmkernel.InstallOptions{Arch: *arch, Deb: *debPath})
	if err != nil {
		fmt.Fprintln(os.Stderr, "installer:", err)
		os.Exit(1)
	}
	fmt.Println(k.Release, k.Arch, k.Dir)
}
