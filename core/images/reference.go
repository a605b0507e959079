package images

import (
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// dockerHub is how ggcr names Docker Hub internally; users see docker.io.
const dockerHub = "index.docker.io"

// parsedRef is a user's reference, normalised.
type parsedRef struct {
	ref name.Reference
	// display is the normalised name users see and the store keys by:
	// "docker.io/library/alpine:latest", "localhost:5000/app@sha256:…".
	display string
}

// parseRef normalises s the way Docker does (short names are Docker Hub
// library images, the tag defaults to latest). Registries in insecure are
// reached over plain HTTP; localhost and 127.0.0.1 always are.
func parseRef(s string, insecure []string) (parsedRef, error) {
	if strings.TrimSpace(s) == "" {
		return parsedRef{}, errdefs.InvalidArgument("image reference is empty")
	}
	ref, err := name.ParseReference(s)
	if err != nil {
		return parsedRef{}, errdefs.InvalidArgument("invalid image reference %q: %v", s, err)
	}
	if slices.Contains(insecure, ref.Context().RegistryStr()) {
		if ref, err = name.ParseReference(s, name.Insecure); err != nil {
			return parsedRef{}, errdefs.InvalidArgument("invalid image reference %q: %v", s, err)
		}
	}
	return parsedRef{ref: ref, display: displayName(ref)}, nil
}

// displayName renders ref with Docker Hub spelled docker.io.
func displayName(ref name.Reference) string {
	repo := ref.Context()
	reg := repo.RegistryStr()
	if reg == dockerHub {
		reg = "docker.io"
	}
	base := reg + "/" + repo.RepositoryStr()
	switch r := ref.(type) {
	case name.Digest:
		return base + "@" + r.DigestStr()
	case name.Tag:
		return base + ":" + r.TagStr()
	}
	return base
}

// splitName splits a display name into repository and tag; digest names
// have no tag.
func splitName(display string) (repo, tag string) {
	if i := strings.Index(display, "@"); i >= 0 {
		return display[:i], ""
	}
	slash := strings.LastIndex(display, "/")
	if i := strings.LastIndex(display, ":"); i > slash {
		return display[:i], display[i+1:]
	}
	return display, ""
}
