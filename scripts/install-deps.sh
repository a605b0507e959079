#!/usr/bin/env bash
# Installs the system packages Berth's build and tests need, on Debian or
# Ubuntu, as root. Idempotent: it installs only what is missing.
set -euo pipefail
packages=(
  protobuf-compiler   # protoc, for make proto / check-proto
  iproute2            # ip, for network namespace tests
  util-linux          # nsenter, unshare, flock
  mount               # losetup: loop disks for the resources-cgroup IO and device tests
  cgroup-tools        # cgcreate/cgexec: the resources-cgroup benchmark's peer
  gcc pkg-config      # cgo: the sandbox init's nsenter and libseccomp
  libseccomp-dev      # seccomp filters in the sandbox init (static lib too)
  busybox-static      # tiny rootfs for sandbox tests; make demo-image
  skopeo              # the image pull benchmark's peer
  runc                # the sandbox benchmark's peer
  containerd          # ctr: the container-run benchmark's peer
  curl                # the REST gateway test (curl --unix-socket)
  criu                # checkpoint/restore where `criu check` passes
  umoci               # the unpack check's and benchmark's peer
  xfsprogs            # mkfs.xfs: reflink loop filesystems for snapshot-apfs tests
  qemu-system-x86     # isolation-vm: one micro-VM per container (TCG here, KVM where present)
  qemu-utils          # qemu-img: qcow2 overlays for snapshot-ext4 where reflink is missing
  e2fsprogs           # mkfs.ext4 -d: block snapshots for VMs (snapshot-ext4)
  nftables            # nft: networking tests assert the rules Berth writes
  iptables            # iptables-legacy: netdp's iptables backend is tested through it
  kmod cpio xz-utils  # vmkernel tests cross-check with depmod, cpio -t/-i and xz -d
  qemu-system-arm     # TestVMGuestARM64: the arm64 (Virtualization.framework) guest under TCG
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross  # cross cgo: bin/berth-sandbox-init-arm64
)
arm64_packages=(
  libseccomp-dev:arm64  # static libseccomp for bin/berth-sandbox-init-arm64 (needs dpkg arch arm64)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages ${missing[*]}; run as root (or: sudo $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Guest kernel packages for VM isolation tests (internal/vmkernel/vmkerneltest),
# cached in /var/cache/berth/debs: Debian's amd64 kernel and, for the arm64
# (Virtualization.framework) extraction tests, the cloud-arm64 one.
kernel_deb() { # META[:ARCH] GLOB: apt-get download META's linux-image-<version> dependency
  local dep
  ls /var/cache/berth/debs/$2 >/dev/null 2>&1 && return 0
  dep=$(apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  if [ -z "$dep" ]; then
    apt-get update -qq
    dep=$(apt-cache depends "$1" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  fi
  [[ $1 == *:* && $dep != *:* ]] && dep="$dep:${1#*:}"
  (cd /var/cache/berth/debs && apt-get download -q "$dep" >/dev/null)
}
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  mkdir -p /var/cache/berth/debs
  kernel_deb linux-image-amd64 'linux-image-[0-9]*-amd64_*_amd64.deb'
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  kernel_deb linux-image-cloud-arm64:arm64 'linux-image-[0-9]*-cloud-arm64_*_arm64.deb'
  missing=()
  for p in "${arm64_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # The arm64 guest test's container rootfs (qemu TCG boot of the cloud-arm64 kernel).
  ls /var/cache/berth/debs/busybox-static_*_arm64.deb >/dev/null 2>&1 ||
    (cd /var/cache/berth/debs && apt-get download -q busybox-static:arm64 >/dev/null)
fi
