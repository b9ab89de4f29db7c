// Command hostsim runs a simulated multi-host cluster on this machine (see
// package hostsim and docs/multihost.md) until interrupted:
//
//	hostsim up --name demo --nodes 3 --dir /var/tmp/demo [--image localhost/app:v1 ...]
//
// It prints the cluster (bridge address, and per node: name, namespace,
// address, pod subnet, Podman socket, data dir) as JSON on stdout, waits
// for Ctrl-C or SIGTERM, then removes everything it created.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"berth.dev/berth/nodeagent/hostsim"
)

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		fmt.Fprintln(os.Stderr, "hostsim:", err)
		os.Exit(1)
	}
}

// imageList collects repeated --image flags.
type imageList []string

func (l *imageList) String() string     { return strings.Join(*l, ",") }
func (l *imageList) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, logger *slog.Logger) error {
	if len(args) == 0 || args[0] != "up" {
		return errors.New("usage: hostsim up [--name NAME] [--nodes N] [--dir DIR] [--image TAG (repeatable)]")
	}
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	name := fs.String("name", "demo", "prefix of every namespace and interface (1-8 lowercase letters or digits)")
	nodes := fs.Int("nodes", 3, "number of simulated hosts")
	dir := fs.String("dir", "", "scratch directory for node storage (default: a new temporary directory)")
	envFile := fs.String("env", "", "also write the cluster as shell variables to this file (for scripts)")
	var images imageList
	fs.Var(&images, "image", "image tag in the host's Podman storage to copy into every node (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "hostsim-"+*name+"-data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}

	// Ctrl-C during start-up cancels it; New then removes what it made.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := hostsim.New(startCtx, hostsim.Options{Name: *name, Nodes: *nodes, Dir: *dir, Images: images, Logger: logger})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return errors.Join(err, c.Close())
	}
	if *envFile != "" {
		if err := writeEnv(*envFile, c); err != nil {
			return errors.Join(err, c.Close())
		}
	}
	logger.Info("cluster running; press Ctrl-C to remove it")
	<-ctx.Done()
	return c.Close()
}

// writeEnv writes the cluster as shell assignments: BRIDGE_ADDR, NODES (the
// names) and, per node i (1-based), NODE_i_NAME, NODE_i_NETNS, NODE_i_ADDR,
// NODE_i_SUBNET, NODE_i_SOCKET and NODE_i_DATADIR. It is written whole,
// then renamed, so a script polling for it never reads half of it.
func writeEnv(path string, c *hostsim.Cluster) error {
	var b strings.Builder
	fmt.Fprintf(&b, "BRIDGE_ADDR=%q\n", c.BridgeAddr)
	var names []string
	for i, n := range c.Nodes {
		names = append(names, n.Name)
		fmt.Fprintf(&b, "NODE_%d_NAME=%q\nNODE_%d_NETNS=%q\nNODE_%d_ADDR=%q\nNODE_%d_SUBNET=%q\nNODE_%d_SOCKET=%q\nNODE_%d_DATADIR=%q\n",
			i+1, n.Name, i+1, n.Netns, i+1, n.Addr, i+1, n.PodSubnet, i+1, n.PodmanSocket, i+1, n.DataDir)
	}
	fmt.Fprintf(&b, "NODES=%q\n", strings.Join(names, " "))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
