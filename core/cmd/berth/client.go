package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
)

// errNoDaemon is returned when the admin socket does not answer.
var errNoDaemon = errors.New("no berth daemon is running (start it with: berth system start)")

// dialUnix connects to a unix socket without waiting: a daemon that is not
// there is an immediate error.
func dialUnix(path string) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}),
	}, errdefs.DialOptions()...)
	return grpc.NewClient("passthrough:///"+path, opts...)
}

// adminClient returns the core's System service on the admin socket, after
// checking it answers.
func adminClient(ctx context.Context, cfg *config.Config) (*api.SystemClient, func(), error) {
	conn, err := dialUnix(daemon.AdminSocketPath(cfg))
	if err != nil {
		return nil, nil, err
	}
	c := api.NewSystemClient(conn)
	callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Version(callCtx); err != nil {
		_ = conn.Close()
		return nil, nil, errNoDaemon
	}
	return c, func() { _ = conn.Close() }, nil
}

// publicAPIWait is how long the CLI waits for the public API while the api
// plugin restarts.
const publicAPIWait = 10 * time.Second

// dialPublic connects to the public API's gRPC endpoint, which the
// daemon's status lists, retrying for up to wait while the api plugin
// restarts. The connection is returned once the API answers.
func dialPublic(ctx context.Context, cfg *config.Config, wait time.Duration) (*grpc.ClientConn, error) {
	admin, closeAdmin, err := adminClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer closeAdmin()
	deadline := time.Now().Add(wait)
	for {
		conn, err := tryPublic(ctx, admin)
		if err == nil {
			return conn, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("public API not reachable: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tryPublic(ctx context.Context, admin *api.SystemClient) (*grpc.ClientConn, error) {
	st, err := admin.Status(ctx)
	if err != nil {
		return nil, err
	}
	for _, e := range st.Endpoints {
		path, ok := strings.CutPrefix(e.Address, "unix://")
		if e.Kind != "grpc" || !ok {
			continue
		}
		conn, err := dialUnix(path)
		if err != nil {
			return nil, err
		}
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = api.NewSystemClient(conn).Version(callCtx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		return conn, nil
	}
	return nil, errors.New("no api plugin serves a gRPC endpoint (is plugin \"api\" \"grpc\" enabled in config.hcl?)")
}
