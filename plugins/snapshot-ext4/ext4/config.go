package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"github.com/docker/go-units"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/schema"
)

// configSchema declares the plugin's settings in config.hcl:
//
//	plugin "snapshot" "ext4" {
//	  size          = "2GiB" # the ext4 size of every image (sparse: free space costs nothing)
//	  copy_on_write = "auto" # "auto", "reflink" or "qcow2": how a container's image shares its parent's
//	  mkfs_ext4     = ""     # mkfs.ext4 to use; "" = PATH, /sbin, /usr/sbin, Homebrew's e2fsprogs
//	  qemu_img      = ""     # qemu-img, to read written disks back (commit); "" = PATH, /opt/homebrew/bin, /usr/local/bin
//	}
//
// size is a floor: a chain whose content needs more gets a bigger image
// (content + 25% + 128 MiB, and one inode per 16 KiB). "auto" reflinks where
// the state dir's filesystem can (xfs reflink=1, btrfs, APFS clonefile) and
// otherwise makes qcow2 overlays on Linux; darwin's Virtualization.framework
// reads raw images only, so there the state dir must be on APFS.
var configSchema = schema.Object(map[string]*schema.Spec{
	"size":          schema.Default(schema.Attr("size", "string", false), schema.Literal(`"2GiB"`)),
	"copy_on_write": schema.Default(schema.Attr("copy_on_write", "string", false), schema.Literal(`"auto"`)),
	"mkfs_ext4":     schema.Default(schema.Attr("mkfs_ext4", "string", false), schema.Literal(`""`)),
	"qemu_img":      schema.Default(schema.Attr("qemu_img", "string", false), schema.Literal(`""`)),
})

// Copy-on-write modes.
const (
	CowAuto    = "auto"
	CowReflink = "reflink"
	CowQcow2   = "qcow2"
)

// MinSize is the smallest image size accepted: the journal and metadata of
// an ext4 take a few MiB, and a rootfs needs room to write.
const MinSize = 64 << 20

// Settings is the decoded configuration.
type Settings struct {
	Size        string `json:"size"`
	CopyOnWrite string `json:"copy_on_write"`
	MkfsExt4    string `json:"mkfs_ext4"`
	QemuImg     string `json:"qemu_img"`

	sizeBytes int64
}

func decodeSettings(c schema.Config) (Settings, error) {
	var s Settings
	if err := c.Decode(&s); err != nil {
		return s, errdefs.InvalidArgument("snapshot-ext4: %v", err)
	}
	if s.Size == "" {
		s.Size = "2GiB"
	}
	if s.CopyOnWrite == "" {
		s.CopyOnWrite = CowAuto
	}
	n, err := units.RAMInBytes(s.Size)
	if err != nil || n < MinSize {
		return s, errdefs.InvalidArgument("snapshot-ext4: size %q is not a size of at least 64MiB (write it like \"2GiB\")", s.Size)
	}
	s.sizeBytes = n
	switch s.CopyOnWrite {
	case CowAuto, CowReflink, CowQcow2:
	default:
		return s, errdefs.InvalidArgument("snapshot-ext4: copy_on_write %q is not one of \"auto\", \"reflink\", \"qcow2\"", s.CopyOnWrite)
	}
	return s, nil
}

// findTool returns the configured path (checked) or the first of name found
// in PATH or the extra directories.
func findTool(configured, name string, extra ...string) (string, error) {
	if configured != "" {
		if st, err := os.Stat(configured); err != nil || st.IsDir() {
			return "", errdefs.InvalidArgument("snapshot-ext4: %s %q is not a program (%v)", name, configured, err)
		}
		return configured, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range extra {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errdefs.NotImplemented("snapshot-ext4: %s not found in PATH or %v: %s", name, extra, installHint(name))
}

func installHint(name string) string {
	pkg := "e2fsprogs"
	if name == "qemu-img" {
		pkg = "qemu-utils"
	}
	if runtime.GOOS == "darwin" {
		if name == "qemu-img" {
			return "brew install qemu"
		}
		return "brew install e2fsprogs (keg-only: it is found in /opt/homebrew/opt/e2fsprogs/sbin)"
	}
	return "apt-get install " + pkg + " (scripts/install-deps.sh installs it)"
}

var mkfsDirs = []string{"/sbin", "/usr/sbin", "/opt/homebrew/opt/e2fsprogs/sbin", "/usr/local/opt/e2fsprogs/sbin"}
var qemuImgDirs = []string{"/usr/bin", "/opt/homebrew/bin", "/usr/local/bin"}
