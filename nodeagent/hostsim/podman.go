package hostsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings"
	"github.com/containers/podman/v5/pkg/bindings/images"

	"berth.dev/berth/nodeagent/hostsetup"
	"berth.dev/berth/nodeagent/runtime/podman"
)

// Several Podman 4.3.1 services coexist on one machine when each has its
// own --root, --runroot, --tmpdir and --network-config-dir (measured):
//   - libpod's state database lives in <root>/libpod and records the
//     directories it was created with: reusing a root with another
//     --runroot fails with "database configuration mismatch". Nothing is
//     shared between nodes, so each node's database is consistent by
//     construction.
//   - The network definitions live in the network config dir; the default
//     network's subnet comes from containers.conf [network] default_subnet,
//     which Podman 4.3.1 with netavark 1.4 honours: no network is created.
//   - IP allocations are not per node: rootful Podman keeps its IPAM
//     database at the fixed /run/containers/networks/ipam.db (not under
//     --runroot), shared by every service on the machine, the host's own
//     included. Allocations are kept per subnet, so distinct pod subnets
//     never collide; addresses are handed out round-robin, so a node's
//     first pod is not always .2.
//   - The SHM lock segment (/dev/shm/libpod_lock) is shared by every rootful
//     Podman on the machine; its allocation bitmap lives in the segment
//     itself (libpod/lock/shm), so the services draw from one pool of 2048
//     locks without handing out the same one twice.
//   - The pause image is built per storage from catatonit on first pod
//     (about 0.3 s), offline: it is not copied.
//   - After the service exits, containers/storage leaves <root>/overlay
//     bind-mounted on itself; teardown unmounts it.

// startNodePodman prepares the node's Podman directories and configuration
// and starts its API service inside the node's namespace.
func (c *Cluster) startNodePodman(ctx context.Context, n *Node) error {
	dirs := map[string]string{}
	for _, d := range []string{"root", "runroot", "tmp", "netconf", "agent"} {
		dirs[d] = filepath.Join(n.dir, d)
		if d == "runroot" {
			// Podman refuses a runroot longer than 50 characters, and Dir
			// may be a long t.TempDir(): it goes beside the sockets.
			dirs[d] = filepath.Join(c.socketDir, n.Name+"-run")
		}
		if err := os.MkdirAll(dirs[d], 0o700); err != nil {
			return fmt.Errorf("hostsim: %s: %w", n.Name, err)
		}
	}
	confPath := filepath.Join(n.dir, "containers.conf")
	socket := filepath.Join(c.socketDir, n.Name+".sock")
	n.DataDir = dirs["agent"]
	n.PodmanSocket = "unix://" + socket
	n.svcOpt = podman.ServiceOptions{
		Socket:           socket,
		Root:             dirs["root"],
		RunRoot:          dirs["runroot"],
		TmpDir:           dirs["tmp"],
		NetworkConfigDir: dirs["netconf"],
		ContainersConf:   confPath,
		Netns:            n.nsName,
		Logger:           n.logger,
	}
	// Registered before the start, so a failed start still unmounts and
	// removes what Podman created.
	c.onClose("tear down Podman on "+n.Name, n.teardownPodman)

	conf, err := nodeContainersConf(n)
	if err != nil {
		return err
	}
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("hostsim: %s: %w", n.Name, err)
	}
	return n.StartPodman(ctx)
}

// nodeContainersConf is the project's containers.conf with the node's pod
// subnet as the default network's subnet.
func nodeContainersConf(n *Node) (string, error) {
	base := hostsetup.ContainersConf()
	if strings.Contains(base, "\n[network]") {
		return "", errors.New("hostsim: the project's containers.conf already has a [network] table; merge default_subnet into it")
	}
	return fmt.Sprintf("%s\n# Added by hostsim: this node's pods get addresses from its own subnet.\n[network]\ndefault_subnet = %q\n",
		strings.TrimRight(base, "\n"), n.PodSubnet.String()), nil
}

// StopPodman stops the node's Podman service, as when a host's Podman dies:
// its socket stops answering, its containers keep running (conmon owns
// them). Stopping a stopped service is a no-op.
func (n *Node) StopPodman() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.svc == nil {
		return nil
	}
	err := n.svc.Stop()
	n.svc = nil
	if err != nil {
		return fmt.Errorf("hostsim: stop Podman on %s: %w", n.Name, err)
	}
	n.logger.Info("podman stopped")
	return nil
}

// StartPodman starts the node's Podman service on the same socket and
// storage. Pods created before StopPodman are still known, and still
// running. Starting a running service is a no-op.
func (n *Node) StartPodman(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.svc != nil {
		return nil
	}
	svc, err := podman.StartService(ctx, n.svcOpt)
	if err != nil {
		return fmt.Errorf("hostsim: start Podman on %s: %w", n.Name, err)
	}
	n.svc = svc
	n.logger.Info("podman started", "socket", n.PodmanSocket)
	return nil
}

// podmanCLI runs the podman CLI on the node's storage, inside its namespace
// (netavark tears pod networks down in the namespace it runs in).
func (n *Node) podmanCLI(ctx context.Context, args ...string) error {
	o := n.svcOpt
	full := append([]string{"--root", o.Root, "--runroot", o.RunRoot, "--tmpdir", o.TmpDir, "--network-config-dir", o.NetworkConfigDir}, args...)
	cmd := command(ctx, n.Netns, "podman", full...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+o.ContainersConf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// teardownPodman removes every pod and container of the node (whether its
// service runs or not), stops the service, unmounts what storage left
// mounted and removes the node's directory.
func (n *Node) teardownPodman(ctx context.Context) error {
	var errs []error
	if _, err := os.Stat(filepath.Join(n.svcOpt.Root, "libpod")); err == nil {
		for _, args := range [][]string{
			{"pod", "rm", "--all", "--force", "--time", "0"},
			{"rm", "--all", "--force", "--time", "0"},
		} {
			if err := n.podmanCLI(ctx, args...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := n.StopPodman(); err != nil {
		errs = append(errs, err)
	}
	for _, dir := range []string{n.svcOpt.RunRoot, n.dir} {
		if err := unmountAll(dir); err != nil {
			errs = append(errs, err)
			// Removing files below a mount point that is still there would
			// reach into whatever is mounted.
			return errors.Join(errs...)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// copyImages makes every tag available in every node's storage: each image
// is saved once from the host's default storage (cached by image ID in
// cacheDir), loaded through each node's API and tagged there.
func (c *Cluster) copyImages(ctx context.Context, tags []string, cacheDir string) error {
	if len(tags) == 0 {
		return nil
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return fmt.Errorf("hostsim: image cache: %w", err)
	}
	c.onClose("remove "+cacheDir, func(context.Context) error { return os.RemoveAll(cacheDir) })

	type image struct {
		id, archive string
		tags        []string
	}
	var imgs []*image
	byID := map[string]*image{}
	for _, tag := range tags {
		out, err := exec.CommandContext(ctx, "podman", "image", "inspect", "--format", "{{.Id}}", tag).Output()
		if err != nil {
			return fmt.Errorf("hostsim: image %s is not in the host's storage (build it first): %w", tag, exitDetail(err))
		}
		id := strings.TrimSpace(string(out))
		img := byID[id]
		if img == nil {
			img = &image{id: id, archive: filepath.Join(cacheDir, id+".tar")}
			byID[id] = img
			imgs = append(imgs, img)
			if err := saveImage(ctx, id, img.archive); err != nil {
				return err
			}
		}
		img.tags = append(img.tags, tag)
	}
	for _, n := range c.Nodes {
		conn, err := bindings.NewConnection(ctx, n.PodmanSocket)
		if err != nil {
			return fmt.Errorf("hostsim: connect to %s's Podman: %w", n.Name, err)
		}
		for _, img := range imgs {
			if err := loadImage(conn, img.archive); err != nil {
				return fmt.Errorf("hostsim: load %s into %s: %w", img.tags[0], n.Name, err)
			}
			for _, tag := range img.tags {
				repo, t := splitTag(tag)
				if err := images.Tag(conn, img.id, t, repo, nil); err != nil {
					return fmt.Errorf("hostsim: tag %s on %s: %w", tag, n.Name, err)
				}
			}
		}
		n.logger.Debug("images loaded", "images", tags)
	}
	return nil
}

// saveImage writes the image (by ID, so the archive is the same whichever
// tag asked for it) unless the cache already has it.
func saveImage(ctx context.Context, id, archive string) error {
	if _, err := os.Stat(archive); err == nil {
		return nil
	}
	tmp := archive + ".part"
	_ = os.Remove(tmp)
	if out, err := exec.CommandContext(ctx, "podman", "save", "--quiet", "--output", tmp, id).CombinedOutput(); err != nil {
		return fmt.Errorf("hostsim: save image %s: %w: %s", id, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, archive); err != nil {
		return fmt.Errorf("hostsim: save image %s: %w", id, err)
	}
	return nil
}

func loadImage(conn context.Context, archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = images.Load(conn, f)
	return err
}

// splitTag splits "localhost/app:v1" into repository and tag; a reference
// without a tag means "latest", as in Podman.
func splitTag(ref string) (repo, tag string) {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon], ref[colon+1:]
	}
	return ref, "latest"
}

func exitDetail(err error) error {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && len(exitErr.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(exitErr.Stderr)))
	}
	return err
}
