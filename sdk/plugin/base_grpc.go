package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/berth-dev/berth/sdk/errdefs"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/sdk/internal/gen/pluginv1"
	"github.com/berth-dev/berth/sdk/schema"
)

// RegisterBaseServer serves impl's Base contract on s. broker is used to
// build the Handles passed to Configure; it may be nil for a server that is
// given no handles (tests, the core's own proxies).
func RegisterBaseServer(s *grpc.Server, impl Base, broker *goplugin.GRPCBroker) {
	pluginv1.RegisterBaseServer(s, &baseServer{impl: impl, broker: broker})
}

type baseServer struct {
	pluginv1.UnimplementedBaseServer
	impl    Base
	broker  *goplugin.GRPCBroker
	handles *Handles
}

func (s *baseServer) Info(ctx context.Context, _ *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pluginv1.InfoResponse{
		Layer:        string(info.Layer),
		Name:         info.Name,
		Version:      info.Version,
		ApiVersions:  info.APIVersions,
		Os:           info.OS,
		Arch:         info.Arch,
		Capabilities: info.Capabilities,
	}, nil
}

func (s *baseServer) ConfigSchema(ctx context.Context, _ *pluginv1.ConfigSchemaRequest) (*pluginv1.ConfigSchemaResponse, error) {
	spec, err := s.impl.ConfigSchema(ctx)
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode config schema: %w", err)
	}
	return &pluginv1.ConfigSchemaResponse{SpecJson: b}, nil
}

func (s *baseServer) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	var handles *Handles
	if len(req.Handles) > 0 && s.broker != nil {
		if s.handles != nil {
			_ = s.handles.Close()
		}
		info := map[string]HandleInfo{}
		for name, i := range req.HandleInfo {
			info[name] = HandleInfo{Layer: Layer(i.Layer), Name: i.Name, Default: i.Default, Snapshotter: i.Snapshotter, Capabilities: i.Capabilities}
		}
		handles = NewHandles(s.broker, req.Handles, info)
		handles.dialAll()
		s.handles = handles
	}
	err := s.impl.Configure(ctx, ConfigureRequest{
		Config:     schema.Config{JSON: req.ConfigJson},
		APIVersion: req.ApiVersion,
		StateDir:   req.StateDir,
		RuntimeDir: req.RuntimeDir,
		Handles:    handles,
	})
	if err != nil {
		return nil, errdefs.ToGRPC(err)
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (s *baseServer) HandleChanged(ctx context.Context, req *pluginv1.HandleChangedRequest) (*pluginv1.HandleChangedResponse, error) {
	if w, ok := s.impl.(HandleWatcher); ok {
		w.HandleChanged(ctx, HandleChange{Handle: req.Handle, Available: req.Available, Reason: req.Reason})
	}
	return &pluginv1.HandleChangedResponse{}, nil
}

// BaseClient is the Base contract of a plugin reached over gRPC. The core
// also uses it to configure plugins and to send them handle IDs, which the
// Go interface Base cannot carry.
type BaseClient struct {
	c pluginv1.BaseClient
}

// NewBaseClient returns a Base over conn.
func NewBaseClient(conn grpc.ClientConnInterface) *BaseClient {
	return &BaseClient{c: pluginv1.NewBaseClient(conn)}
}

var _ Base = (*BaseClient)(nil)
var _ HandleWatcher = (*BaseClient)(nil)

// Info implements Base.
func (b *BaseClient) Info(ctx context.Context) (Info, error) {
	r, err := b.c.Info(ctx, &pluginv1.InfoRequest{})
	if err != nil {
		return Info{}, errdefs.FromGRPC(err)
	}
	return Info{
		Layer:        Layer(r.Layer),
		Name:         r.Name,
		Version:      r.Version,
		APIVersions:  r.ApiVersions,
		OS:           r.Os,
		Arch:         r.Arch,
		Capabilities: r.Capabilities,
	}, nil
}

// ConfigSchema implements Base.
func (b *BaseClient) ConfigSchema(ctx context.Context) (*schema.Spec, error) {
	r, err := b.c.ConfigSchema(ctx, &pluginv1.ConfigSchemaRequest{})
	if err != nil {
		return nil, errdefs.FromGRPC(err)
	}
	var spec schema.Spec
	if err := json.Unmarshal(r.SpecJson, &spec); err != nil {
		return nil, fmt.Errorf("plugin sent an unreadable config schema: %w", err)
	}
	return &spec, nil
}

// Configure implements Base. Handles in req cannot cross the wire; use
// ConfigureWithHandles to send broker IDs.
func (b *BaseClient) Configure(ctx context.Context, req ConfigureRequest) error {
	return b.ConfigureWithHandles(ctx, req, nil, nil)
}

// ConfigureWithHandles sends req with handle name -> broker ID pairs the
// plugin will dial through its go-plugin broker, and what each reaches.
func (b *BaseClient) ConfigureWithHandles(ctx context.Context, req ConfigureRequest, handleIDs map[string]uint32, info map[string]HandleInfo) error {
	pbInfo := map[string]*pluginv1.HandleInfo{}
	for name, i := range info {
		pbInfo[name] = &pluginv1.HandleInfo{Layer: string(i.Layer), Name: i.Name, Default: i.Default, Snapshotter: i.Snapshotter, Capabilities: i.Capabilities}
	}
	_, err := b.c.Configure(ctx, &pluginv1.ConfigureRequest{
		ConfigJson: req.Config.JSON,
		ApiVersion: req.APIVersion,
		StateDir:   req.StateDir,
		RuntimeDir: req.RuntimeDir,
		Handles:    handleIDs,
		HandleInfo: pbInfo,
	})
	return errdefs.FromGRPC(err)
}

// HandleChanged implements HandleWatcher by forwarding to the plugin.
func (b *BaseClient) HandleChanged(ctx context.Context, change HandleChange) {
	_, _ = b.c.HandleChanged(ctx, &pluginv1.HandleChangedRequest{
		Handle: change.Handle, Available: change.Available, Reason: change.Reason,
	})
}
