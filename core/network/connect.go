package network

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	sdknet "github.com/berth-dev/berth/sdk/network"
)

// Connect implements sdknet.Service.
func (s *Service) Connect(ctx context.Context, req sdknet.AttachRequest) (isolation.NetworkAttachment, error) {
	if req.ContainerID == "" {
		return isolation.NetworkAttachment{}, errdefs.InvalidArgument("connect: no container ID")
	}
	switch req.Network {
	case sdknet.None, sdknet.Host:
		return isolation.NetworkAttachment{}, errdefs.InvalidArgument("connect: network %s cannot be connected to a running container (only bridge networks)", req.Network)
	}
	if len(req.Ports) > 0 {
		return isolation.NetworkAttachment{}, errdefs.InvalidArgument("connect: ports are published only on the container's first network")
	}
	if s.opts.UserMode {
		return isolation.NetworkAttachment{}, errdefs.NotImplemented("connect: user-mode networks take VMs at create only (a VM's NIC cannot be hot-plugged; sandbox containers need the kernel datapath)")
	}
	want, err := checkAddressAndAliases(req)
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n netRecord
	if req.Network == "" || req.Network == sdknet.DefaultNetwork {
		n, err = s.ensureDefaultLocked(ctx)
	} else {
		n, err = s.resolveLocked(req.Network)
	}
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	var primary, existing epRecord
	err = s.store.db.View(func(tx *bolt.Tx) error {
		eps, err := endpointsIn(tx)
		for _, e := range eps {
			switch {
			case e.ContainerID != req.ContainerID:
			case !e.Connected:
				primary = e
			case e.NetworkID == n.ID:
				existing = e
			}
		}
		return err
	})
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	switch {
	case primary.ContainerID == "":
		return isolation.NetworkAttachment{}, errdefs.InvalidState("container %.12s has no network endpoint (network none or host, or not created): it cannot be connected to %s", req.ContainerID, n.Name)
	case primary.NetworkID == n.ID:
		return isolation.NetworkAttachment{}, errdefs.InvalidArgument("container %.12s is already on network %s", req.ContainerID, n.Name)
	case existing.ContainerID != "":
		return connectedAttachment(n, existing), nil
	}
	e := epRecord{
		ContainerID: req.ContainerID, Name: req.Name, Hostname: primary.Hostname, Aliases: req.Aliases,
		NetworkID: n.ID, Connected: true, CreatedAt: time.Now().UTC(),
	}
	if e.Name == "" {
		e.Name = primary.Name
	}
	err = s.store.db.Update(func(tx *bolt.Tx) error {
		ip, err := allocate(tx, n, req.ContainerID, want)
		if err != nil {
			return err
		}
		e.IP, e.MAC = ip, macOf(ip)
		return putJSON(tx.Bucket(bucketEndpoints), e.key(), e)
	})
	if err != nil {
		return isolation.NetworkAttachment{}, err
	}
	if _, err := s.publishState(n, false); err != nil {
		if derr := s.disconnectLocked(n, e); derr != nil {
			s.log.Error("undo a failed connect", "container_id", req.ContainerID, "network", n.Name, "error", derr)
		}
		return isolation.NetworkAttachment{}, fmt.Errorf("connect %.12s to %s: %w", req.ContainerID, n.Name, err)
	}
	s.log.Info("container connected", "container_id", req.ContainerID, "network", n.Name, "ip", e.IP)
	return connectedAttachment(n, e), nil
}

// connectedAttachment is what the isolation plugin adds for Connect's
// endpoint e on n: one interface, no name (the plugin picks), no gateway.
func connectedAttachment(n netRecord, e epRecord) isolation.NetworkAttachment {
	return isolation.NetworkAttachment{
		Mode: sdknet.ModeBridge,
		Interfaces: []isolation.Interface{{
			Bridge: n.Bridge, MAC: e.MAC,
			Addresses: []string{netip.PrefixFrom(e.IP, n.Subnet.Bits()).String()},
			MTU:       MTU,
		}},
		Hostname: e.Hostname,
	}
}

// Disconnect implements sdknet.Service.
func (s *Service) Disconnect(_ context.Context, containerID, ref string) error {
	if containerID == "" || ref == "" {
		return errdefs.InvalidArgument("disconnect: container ID and network are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.resolveLocked(ref)
	if err != nil {
		return err
	}
	var primary, e epRecord
	err = s.store.db.View(func(tx *bolt.Tx) error {
		if _, err := getJSON(tx.Bucket(bucketEndpoints), containerID, &primary); err != nil {
			return err
		}
		_, err := getJSON(tx.Bucket(bucketEndpoints), connectedKey(containerID, n.ID), &e)
		return err
	})
	if err != nil {
		return err
	}
	if primary.NetworkID == n.ID {
		return errdefs.InvalidArgument("network %s is container %.12s's first network: it stays until the container is removed", n.Name, containerID)
	}
	if e.ContainerID == "" {
		return errdefs.NotFound("container %.12s is not connected to network %s", containerID, n.Name)
	}
	if err := s.disconnectLocked(n, e); err != nil {
		return err
	}
	s.log.Info("container disconnected", "container_id", containerID, "network", n.Name, "ip", e.IP)
	return nil
}

func (s *Service) disconnectLocked(n netRecord, e epRecord) error {
	err := s.store.db.Update(func(tx *bolt.Tx) error {
		if err := release(tx, n.ID, e.IP, e.ContainerID); err != nil {
			return err
		}
		return tx.Bucket(bucketEndpoints).Delete([]byte(e.key()))
	})
	if err != nil {
		return err
	}
	_, err = s.publishState(n, false)
	return err
}
