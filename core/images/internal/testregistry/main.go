// Command testregistry serves go-containerregistry's in-memory registry on
// a loopback address, holding one image of random layers, for the image
// pull benchmark (scripts/bench-images.sh). It is a test fixture, not a
// registry anyone should run.
//
//	testregistry -addr 127.0.0.1:35000 -layers 5 -layer-size 10000000 -ready FILE
//
// It pushes the image to itself, writes FILE, and serves until SIGTERM or
// SIGINT. The image is the same for the same flags (a seeded source).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:35000", "loopback address to serve on")
	repo := flag.String("repo", "bench/img:latest", "repository:tag of the image")
	layers := flag.Int64("layers", 5, "number of layers")
	size := flag.Int64("layer-size", 10_000_000, "bytes of random content per layer")
	ready := flag.String("ready", "", "file written once the image is pushed")
	flag.Parse()
	if err := run(*addr, *repo, *layers, *size, *ready); err != nil {
		fmt.Fprintln(os.Stderr, "testregistry:", err)
		os.Exit(1)
	}
}

func run(addr, repo string, layers, size int64, ready string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-addr %s: only loopback addresses are served", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()

	img, err := random.Image(size, layers, random.WithSource(rand.NewSource(42)))
	if err != nil {
		return err
	}
	ref, err := name.ParseReference(addr + "/" + repo)
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	d, _ := img.Digest()
	if ready != "" {
		if err := os.WriteFile(ready, []byte(ref.String()+"@"+d.String()+"\n"), 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("serving %s (%s) on %s\n", ref, d, addr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
