package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/network"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// settings are the plugin's block of config.hcl.
type settings struct {
	// Socket is the public API socket; empty means api.sock in the plugin's
	// runtime dir.
	Socket *string `json:"socket"`
	// SocketMode is the sockets' permission bits, as an octal string.
	SocketMode *string `json:"socket_mode"`
	// RESTSocket is the REST/JSON gateway's socket; empty means
	// api-rest.sock beside the gRPC socket.
	RESTSocket *string `json:"rest_socket"`
	// RESTAddress, when set, also serves the gateway over TCP on a
	// loopback address ("127.0.0.1:8420"; port 0 picks one).
	RESTAddress *string `json:"rest_address"`
}

// frontend serves the public API. It holds no state of its own: the core
// and lifecycle own everything it shows.
type frontend struct {
	log hclog.Logger

	mu         sync.Mutex
	server     *grpc.Server
	listener   net.Listener
	socket     string
	rest       *http.Server
	restSocket string
	restTCP    *http.Server
	restAddr   string // the TCP listener's address, once listening
	// restAddrWanted is the rest_address setting it was started with.
	restAddrWanted string
	// stopGateway ends the gateway's connection to the gRPC socket.
	stopGateway func()
	// stopAutoRemove ends the auto-remover.
	stopAutoRemove func()
}

var _ api.Frontend = (*frontend)(nil)

// CapContainers is declared by an api plugin that serves the Lifecycle and
// Logs services (containers, exec/attach streams, events, logs) when a
// lifecycle plugin is configured.
const CapContainers = "containers"

func newFrontend(log hclog.Logger) *frontend { return &frontend{log: log} }

func (f *frontend) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerAPI, "grpc", version.Version, api.CapGRPC, api.CapREST, api.CapSystem, api.CapPlugins, images.CapImages, CapContainers, network.CapNetwork), nil
}

func (f *frontend) ConfigSchema(context.Context) (*schema.Spec, error) {
	return schema.Object(map[string]*schema.Spec{
		"socket":       schema.Attr("socket", "string", false),
		"socket_mode":  schema.Default(schema.Attr("socket_mode", "string", false), schema.Literal(`"0660"`)),
		"rest_socket":  schema.Attr("rest_socket", "string", false),
		"rest_address": schema.Attr("rest_address", "string", false),
	}), nil
}

// Configure (re)starts the API server on the configured socket. Calling it
// again with the same socket keeps the server and swaps nothing.
func (f *frontend) Configure(_ context.Context, req plugin.ConfigureRequest) error {
	var s settings
	if err := req.Config.Decode(&s); err != nil {
		return errdefs.InvalidArgument("api grpc config: %v", err)
	}
	socket := filepath.Join(req.RuntimeDir, "api.sock")
	if s.Socket != nil && *s.Socket != "" {
		socket = *s.Socket
	}
	restSocket := filepath.Join(filepath.Dir(socket), "api-rest.sock")
	if s.RESTSocket != nil && *s.RESTSocket != "" {
		restSocket = *s.RESTSocket
	}
	if restSocket == socket {
		return errdefs.InvalidArgument("api grpc config: rest_socket and socket are both %s", socket)
	}
	var restAddress string
	if s.RESTAddress != nil && *s.RESTAddress != "" {
		restAddress = *s.RESTAddress
		if err := checkLoopback(restAddress); err != nil {
			return errdefs.InvalidArgument("api grpc config: rest_address %q: %v", restAddress, err)
		}
	}
	mode := os.FileMode(0o660)
	if s.SocketMode != nil {
		var m uint32
		if _, err := fmt.Sscanf(*s.SocketMode, "%o", &m); err != nil || m > 0o777 {
			return errdefs.InvalidArgument("api grpc config: socket_mode %q is not an octal permission like \"0660\"", *s.SocketMode)
		}
		mode = os.FileMode(m)
	}
	system, err := api.SystemFromHandles(req.Handles)
	if err != nil {
		return err
	}
	// The lifecycle plugin, when one is configured.
	var lc *lifecycle.Client
	if req.Handles.Has(plugin.HandleLifecycle) {
		if lc, err = lifecycle.FromHandles(req.Handles); err != nil {
			return err
		}
	}
	// The core's image service, when this core offers one.
	var imageSvc images.Service
	if req.Handles.Has(plugin.HandleImages) {
		if imageSvc, err = images.FromHandles(req.Handles); err != nil {
			return err
		}
	}

	// The core's network service, when this core offers one.
	var netSvc network.Service
	if req.Handles.Has(plugin.HandleNetwork) {
		if netSvc, err = network.FromHandles(req.Handles); err != nil {
			return err
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.server != nil {
		if f.socket == socket && f.restSocket == restSocket && f.restAddrWanted == restAddress {
			return nil
		}
		f.stopLocked()
	}
	l, err := listenUnix(socket, mode, socketGroup)
	if err != nil {
		return err
	}
	srv := sdk.NewGRPCServer(nil)
	api.RegisterSystemServer(srv, system)
	if imageSvc != nil {
		images.RegisterServer(srv, imageSvc)
	}
	if netSvc != nil {
		network.RegisterServer(srv, netSvc)
	}
	if lc != nil {
		// The plugin contract's Lifecycle service is the public one: its
		// server adapter forwards every call to the lifecycle handle.
		lifecycle.NewPlugin(lc).Register(srv, lc)
		api.RegisterLogsServer(srv, &logReader{lifecycle: lc, system: system, pluginsDir: filepath.Dir(req.StateDir)})
		actx, cancel := context.WithCancel(context.Background())
		go (&autoRemover{lc: lc, log: f.log.Named("autoremove")}).run(actx)
		f.stopAutoRemove = cancel
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			f.log.Error("public API server stopped", "error", err)
		}
	}()
	f.server, f.listener, f.socket = srv, l, socket
	f.log.Info("serving the public API", "socket", socket)
	if err := f.serveRESTLocked(socket, restSocket, restAddress, mode); err != nil {
		f.stopLocked()
		return err
	}
	return nil
}

// serveRESTLocked serves the REST/JSON gateway on restSocket; it calls the
// gRPC API on socket, so both show the same services and errors.
func (f *frontend) serveRESTLocked(socket, restSocket, restAddress string, mode os.FileMode) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("gateway connection to %s: %w", socket, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	handler, err := api.NewRESTGateway(ctx, conn)
	if err != nil {
		cancel()
		_ = conn.Close()
		return fmt.Errorf("rest gateway: %w", err)
	}
	l, err := listenUnix(restSocket, mode, socketGroup)
	if err != nil {
		cancel()
		_ = conn.Close()
		return err
	}
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			f.log.Error("REST gateway stopped", "error", err)
		}
	}()
	f.rest, f.restSocket = hs, restSocket
	f.stopGateway = func() { cancel(); _ = conn.Close() }
	f.restAddrWanted = restAddress
	if restAddress != "" {
		tl, err := net.Listen("tcp", restAddress)
		if err != nil {
			return fmt.Errorf("rest_address %s: %w", restAddress, err)
		}
		ts := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := ts.Serve(tl); err != nil && !errors.Is(err, http.ErrServerClosed) {
				f.log.Error("REST gateway (TCP) stopped", "error", err)
			}
		}()
		f.restTCP, f.restAddr = ts, tl.Addr().String()
		f.log.Info("serving the REST gateway over TCP", "address", f.restAddr)
	}
	f.log.Info("serving the REST gateway", "socket", restSocket, "openapi", api.OpenAPIPath)
	return nil
}

// stopLocked stops both servers and the auto-remover, and removes the
// sockets.
func (f *frontend) stopLocked() {
	if f.stopAutoRemove != nil {
		f.stopAutoRemove()
		f.stopAutoRemove = nil
	}
	if f.restTCP != nil {
		_ = f.restTCP.Close()
		f.restTCP, f.restAddr = nil, ""
	}
	if f.rest != nil {
		_ = f.rest.Close()
		f.stopGateway()
		_ = os.Remove(f.restSocket)
		f.rest, f.restSocket, f.stopGateway = nil, "", nil
	}
	if f.server != nil {
		f.server.Stop()
		_ = os.Remove(f.socket)
		f.server, f.listener, f.socket = nil, nil, ""
	}
}

func (f *frontend) Endpoints(context.Context) ([]api.Endpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.server == nil {
		return nil, nil
	}
	es := []api.Endpoint{{Kind: "grpc", Address: "unix://" + f.socket}}
	if f.rest != nil {
		es = append(es, api.Endpoint{Kind: "rest", Address: "unix://" + f.restSocket})
	}
	if f.restTCP != nil {
		es = append(es, api.Endpoint{Kind: "rest", Address: "http://" + f.restAddr})
	}
	return es, nil
}

// checkLoopback accepts host:port with a loopback IP: the REST gateway has
// no authentication, so it never listens beyond this machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("only a loopback IP like 127.0.0.1 is allowed (the API has no authentication)")
	}
	return nil
}

// socketGroup is the group that may use the public API socket besides root.
const socketGroup = "berth"

// listenUnix listens on path, replacing a stale socket left by an earlier
// process, and sets its permissions: mode with group group when that group
// exists, else mode without any group or other bits (root only).
func listenUnix(path string, mode os.FileMode, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket dir: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		_ = c.Close()
		return nil, errdefs.AlreadyExists("api socket %s is served by another process; is another daemon running?", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale api socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on api socket: %w", err)
	}
	gid := -1
	if g, err := user.LookupGroup(group); err == nil {
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			gid = -1
		}
	}
	if gid < 0 {
		mode &^= 0o077
	} else if err := os.Lchown(path, -1, gid); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chown api socket to group %s: %w", group, err)
	}
	if err := os.Chmod(path, mode); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chmod api socket: %w", err)
	}
	return l, nil
}
