package ext4

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// readImage reads len(buf) bytes at guest offset off of a raw or qcow2
// image (following a qcow2's backing chain), within one qcow2 cluster. It
// is a reader for small metadata (the ext4 superblock), not a block
// driver: compressed clusters and extended L2 entries are refused.
func readImage(path string, buf []byte, off int64) error {
	return readImageDepth(path, buf, off, 0)
}

func readImageDepth(path string, buf []byte, off int64, depth int) error {
	if depth > 16 {
		return fmt.Errorf("%s: backing chain deeper than 16", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [104]byte
	n, err := f.ReadAt(hdr[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if n < 72 || string(hdr[:4]) != "QFI\xfb" {
		_, err := f.ReadAt(buf, off) // raw
		return err
	}
	be := binary.BigEndian
	version := be.Uint32(hdr[4:])
	clusterBits := be.Uint32(hdr[20:])
	if clusterBits < 9 || clusterBits > 21 {
		return fmt.Errorf("%s: qcow2 cluster_bits %d out of range", path, clusterBits)
	}
	if version >= 3 && n >= 80 && be.Uint64(hdr[72:])&(1<<4) != 0 {
		return fmt.Errorf("%s: qcow2 extended L2 entries are not supported", path)
	}
	cluster := int64(1) << clusterBits
	if off/cluster != (off+int64(len(buf))-1)/cluster {
		return fmt.Errorf("%s: read of %d bytes at %d crosses a cluster", path, len(buf), off)
	}
	backing := func() error {
		bo, bs := be.Uint64(hdr[8:]), be.Uint32(hdr[16:])
		if bo == 0 || bs == 0 || bs > 1023 {
			clear(buf)
			return nil
		}
		name := make([]byte, bs)
		if _, err := f.ReadAt(name, int64(bo)); err != nil {
			return fmt.Errorf("%s: backing file name: %w", path, err)
		}
		b := string(name)
		if !filepath.IsAbs(b) {
			b = filepath.Join(filepath.Dir(path), b)
		}
		return readImageDepth(b, buf, off, depth+1)
	}
	const offMask = 0x00fffffffffffe00
	l2Entries := cluster / 8
	l1Index := off / (cluster * l2Entries)
	if l1Index >= int64(be.Uint32(hdr[36:])) {
		return backing()
	}
	var e [8]byte
	if _, err := f.ReadAt(e[:], int64(be.Uint64(hdr[40:]))+8*l1Index); err != nil {
		return fmt.Errorf("%s: L1 entry: %w", path, err)
	}
	l2 := int64(be.Uint64(e[:]) & offMask)
	if l2 == 0 {
		return backing()
	}
	if _, err := f.ReadAt(e[:], l2+8*((off/cluster)%l2Entries)); err != nil {
		return fmt.Errorf("%s: L2 entry: %w", path, err)
	}
	entry := be.Uint64(e[:])
	if entry&(1<<62) != 0 {
		return fmt.Errorf("%s: compressed qcow2 clusters are not supported here", path)
	}
	if entry&1 != 0 && version >= 3 {
		clear(buf)
		return nil
	}
	host := int64(entry & offMask)
	if host == 0 {
		return backing()
	}
	_, err = f.ReadAt(buf, host+off%cluster)
	return err
}

// usedInodes returns the number of inodes in use in the ext4 filesystem of
// a raw or qcow2 image, from its superblock (as of the last superblock
// write: a mounted filesystem updates it at commit and unmount).
func usedInodes(path string) (int64, error) {
	var sb [1024]byte
	if err := readImage(path, sb[:], 1024); err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[56:]) != 0xEF53 {
		return 0, fmt.Errorf("%s: no ext4 superblock", path)
	}
	total, free := le.Uint32(sb[0:]), le.Uint32(sb[16:])
	if free > total {
		return 0, fmt.Errorf("%s: superblock says %d free of %d inodes", path, free, total)
	}
	return int64(total - free), nil
}

// qcow2 overlay layout written by writeOverlay: cluster 0 the header, its
// extensions and the backing file's name; then the L1 table (zeros: no
// cluster allocated, every read goes to the backing file), the refcount
// table and one refcount block counting those clusters.
const (
	qcowClusterBits = 16 // 64 KiB clusters, qemu's default
	qcowCluster     = 1 << qcowClusterBits
	qcowHeaderLen   = 104
	qcowExtBacking  = 0xE2792ACA // backing file format name
)

// writeOverlay writes a new qcow2 (version 3) image at out, of virtual
// size size, whose every cluster reads from the raw image backing
// (an absolute path), and syncs it: what `qemu-img create -f qcow2 -F raw
// -b BACKING OUT` makes, without starting a process (Prepare's hot path).
func writeOverlay(backing, out string, size int64) error {
	if !filepath.IsAbs(backing) || len(backing) > 1023 {
		return fmt.Errorf("qcow2 backing file %q: want an absolute path of at most 1023 bytes", backing)
	}
	be := binary.BigEndian
	l2Covers := int64(qcowCluster) * (qcowCluster / 8)
	l1Size := (size + l2Covers - 1) / l2Covers
	l1Clusters := max(1, (l1Size*8+qcowCluster-1)/qcowCluster)
	l1Off := int64(qcowCluster)
	rtOff := l1Off + l1Clusters*qcowCluster
	rbOff := rtOff + qcowCluster
	total := rbOff + qcowCluster
	nClusters := total / qcowCluster
	if nClusters > qcowCluster/2 {
		return fmt.Errorf("qcow2 of %d bytes: too large for one refcount block", size)
	}

	hdr := make([]byte, qcowCluster)
	copy(hdr, "QFI\xfb")
	be.PutUint32(hdr[4:], 3)
	be.PutUint32(hdr[20:], qcowClusterBits)
	be.PutUint64(hdr[24:], uint64(size))
	be.PutUint32(hdr[36:], uint32(l1Size))
	be.PutUint64(hdr[40:], uint64(l1Off))
	be.PutUint64(hdr[48:], uint64(rtOff))
	be.PutUint32(hdr[56:], 1)
	be.PutUint32(hdr[96:], 4) // refcount_order: 16-bit refcounts
	be.PutUint32(hdr[100:], qcowHeaderLen)
	p := qcowHeaderLen
	be.PutUint32(hdr[p:], qcowExtBacking)
	be.PutUint32(hdr[p+4:], 3)
	copy(hdr[p+8:], "raw")
	p += 8 + 8                                   // "raw" padded to 8
	be.PutUint32(hdr[p:], 0)                     // end of extensions
	be.PutUint32(hdr[p+4:], 0)                   //
	p += 8                                       //
	be.PutUint64(hdr[8:], uint64(p))             // backing_file_offset
	be.PutUint32(hdr[16:], uint32(len(backing))) // backing_file_size
	copy(hdr[p:], backing)

	rt := make([]byte, qcowCluster)
	be.PutUint64(rt, uint64(rbOff))
	rb := make([]byte, qcowCluster)
	for i := range nClusters {
		be.PutUint16(rb[2*i:], 1)
	}

	f, err := os.OpenFile(out, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = func() error {
		if _, err := f.WriteAt(hdr, 0); err != nil {
			return err
		}
		if err := f.Truncate(total); err != nil { // the L1 table: zeros
			return err
		}
		if _, err := f.WriteAt(rt, rtOff); err != nil {
			return err
		}
		if _, err := f.WriteAt(rb, rbOff); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(out)
		return fmt.Errorf("write qcow2 %s: %w", out, err)
	}
	return nil
}
