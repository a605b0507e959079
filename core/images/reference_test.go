package images

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
)

func TestParseRefNormalisesLikeDocker(t *testing.T) {
	tests := []struct{ in, want, repo, tag, scheme string }{
		{"alpine", "docker.io/library/alpine:latest", "docker.io/library/alpine", "latest", "https"},
		{"alpine:3.20", "docker.io/library/alpine:3.20", "docker.io/library/alpine", "3.20", "https"},
		{"docker.io/library/alpine", "docker.io/library/alpine:latest", "docker.io/library/alpine", "latest", "https"},
		{"user/app:v1", "docker.io/user/app:v1", "docker.io/user/app", "v1", "https"},
		{"localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app", "latest", "http"},
		{"127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b", "c", "http"},
		{"reg.lan:5000/app:1", "reg.lan:5000/app:1", "reg.lan:5000/app", "1", "http"}, // listed as insecure below
		{"quay.io/x/y@sha256:" + sixtyFourA, "quay.io/x/y@sha256:" + sixtyFourA, "quay.io/x/y", "", "https"},
	}
	for _, tt := range tests {
		pr, err := parseRef(tt.in, []string{"reg.lan:5000"})
		if err != nil {
			t.Errorf("parseRef(%q): %v", tt.in, err)
			continue
		}
		repo, tag := splitName(pr.display)
		if pr.display != tt.want || repo != tt.repo || tag != tt.tag {
			t.Errorf("parseRef(%q) = %q (%q, %q); want %q", tt.in, pr.display, repo, tag, tt.want)
		}
		if got := pr.ref.Context().Scheme(); got != tt.scheme {
			t.Errorf("parseRef(%q) scheme %s, want %s", tt.in, got, tt.scheme)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a b", "app:bad tag", "http://reg/app"} {
		if _, err := parseRef(bad, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("parseRef(%q) = %v, want invalid argument", bad, err)
		}
	}
}

const sixtyFourA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
