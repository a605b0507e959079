package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
)

// Credentials live where Docker keeps them (~/.docker/config.json, or
// $DOCKER_CONFIG, through its credential helpers when configured), which is
// where the daemon's keychain (authn.DefaultKeychain) reads them.

// dockerHubServer is the key Docker uses for Docker Hub credentials.
const dockerHubServer = "https://index.docker.io/v1/"

func newRegistryCommand(_ *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Log in to and out of image registries"}
	var username, password string
	var passwordStdin bool
	login := &cobra.Command{
		Use:   "login [REGISTRY]",
		Short: "Check credentials with a registry and store them in ~/.docker/config.json",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			reg, key, err := registryArg(args)
			if err != nil {
				return err
			}
			if passwordStdin {
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("login: reading the password from stdin: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			}
			if username == "" || password == "" {
				return errors.New("login: give --username and --password (or --password-stdin)")
			}
			if err := checkLogin(c.Context(), reg, username, password); err != nil {
				return err
			}
			cf, err := dockerconfig.Load(dockerconfig.Dir())
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{ServerAddress: key, Username: username, Password: password}); err != nil {
				return fmt.Errorf("login: storing credentials: %w", err)
			}
			if err := cf.Save(); err != nil {
				return fmt.Errorf("login: %w", err)
			}
			fmt.Printf("Login Succeeded (%s)\n", reg.Name())
			return nil
		},
	}
	login.Flags().StringVarP(&username, "username", "u", "", "user name")
	login.Flags().StringVarP(&password, "password", "p", "", "password or token (prefer --password-stdin)")
	login.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	logout := &cobra.Command{
		Use:   "logout [REGISTRY]",
		Short: "Remove stored credentials of a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			reg, key, err := registryArg(args)
			if err != nil {
				return err
			}
			cf, err := dockerconfig.Load(dockerconfig.Dir())
			if err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			if err := cf.Save(); err != nil {
				return fmt.Errorf("logout: %w", err)
			}
			fmt.Printf("Removed login credentials for %s\n", reg.Name())
			return nil
		},
	}
	cmd.AddCommand(login, logout)
	return cmd
}

// registryArg parses the registry argument (default Docker Hub) and returns
// the key its credentials are stored under.
func registryArg(args []string) (name.Registry, string, error) {
	s := "index.docker.io"
	if len(args) == 1 {
		s = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(args[0], "https://"), "http://"), "/")
	}
	reg, err := name.NewRegistry(s)
	if err != nil {
		return name.Registry{}, "", fmt.Errorf("registry %q: %v", s, err)
	}
	if reg.Name() == "index.docker.io" {
		return reg, dockerHubServer, nil
	}
	return reg, reg.Name(), nil
}

// checkLogin authenticates to reg with the credentials the way a pull
// would (ggcr's transport: token exchange or basic auth), then asks the
// registry's API root with them, as docker login does: a registry using
// basic auth only says no to a request.
func checkLogin(ctx context.Context, reg name.Registry, username, password string) error {
	auth := authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	tr, err := transport.NewWithContext(ctx, reg, auth, http.DefaultTransport, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		return fmt.Errorf("login to %s failed: %w", reg.Name(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("login to %s failed: %w", reg.Name(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return fmt.Errorf("login to %s failed: %w", reg.Name(), err)
	}
	return nil
}
