package api

import (
	"context"
	_ "embed"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"

	pb "github.com/berth-dev/berth/sdk/internal/gen/apiv1"
	"github.com/berth-dev/berth/sdk/internal/gen/imagesv1"
	"github.com/berth-dev/berth/sdk/internal/gen/lifecyclev1"
	"github.com/berth-dev/berth/sdk/internal/gen/networkv1"
)

// openAPI is the OpenAPI v2 document of the REST API, generated with the
// gateway by scripts/genproto.sh.
//
//go:embed openapi.swagger.json
var openAPI []byte

// OpenAPIPath is where the REST gateway serves its OpenAPI v2 document.
const OpenAPIPath = "/openapi.json"

// OpenAPI returns the REST API's OpenAPI v2 document (JSON).
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

// NewRESTGateway returns the REST/JSON API: grpc-gateway handlers
// (generated from the HTTP rules in sdk/proto/gateway.yaml) that call the
// public gRPC API on conn — System, Logs, Images, Lifecycle and Network — and the
// OpenAPI document at OpenAPIPath. ctx bounds the handlers' registrations.
func NewRESTGateway(ctx context.Context, conn grpc.ClientConnInterface) (http.Handler, error) {
	mux := runtime.NewServeMux()
	for _, register := range []func() error{
		func() error { return pb.RegisterSystemHandlerClient(ctx, mux, pb.NewSystemClient(conn)) },
		func() error { return pb.RegisterLogsHandlerClient(ctx, mux, pb.NewLogsClient(conn)) },
		func() error { return imagesv1.RegisterImagesHandlerClient(ctx, mux, imagesv1.NewImagesClient(conn)) },
		func() error {
			return lifecyclev1.RegisterLifecycleHandlerClient(ctx, mux, lifecyclev1.NewLifecycleClient(conn))
		},
		func() error {
			return networkv1.RegisterNetworkHandlerClient(ctx, mux, networkv1.NewNetworkClient(conn))
		},
	} {
		if err := register(); err != nil {
			return nil, err
		}
	}
	err := mux.HandlePath(http.MethodGet, OpenAPIPath, func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	if err != nil {
		return nil, err
	}
	return mux, nil
}
