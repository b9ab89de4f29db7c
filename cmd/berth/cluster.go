package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"berth.dev/berth/api"
	"berth.dev/berth/api/client"
	"berth.dev/berth/reconciler/pki"
)

// secureListener wraps ln in TLS with the controller's CA (created on first
// start, with the admin credentials the CLI uses) and returns the authority
// that admits joining nodes.
func secureListener(ln net.Listener, dataDir, listen string) (net.Listener, *pki.Authority, error) {
	dir := pki.Dir(dataDir)
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		return nil, nil, err
	}
	if err := ca.EnsureAdminCredentials(dir); err != nil {
		return nil, nil, err
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	cfg, err := ca.ServerTLSConfig([]string{host})
	if err != nil {
		return nil, nil, err
	}
	return tls.NewListener(ln, cfg), pki.NewAuthority(ca, pki.NewTokens(dir, ca.Fingerprint())), nil
}

func newControllerCommand(g *globalFlags) *cobra.Command {
	o := &controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller --repo URL|DIR",
		Short: "Run the control plane for several hosts (agents join with `berth agent`)",
		Long: `controller follows the repository, schedules pods onto the nodes that joined it and
serves its API over TLS. Every call needs a certificate from the controller's CA, kept
in --data-dir/pki: agents get one by joining with a token (berth token create), and the
CLI on this host uses the admin certificate written there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if err := o.fromEnv(); err != nil {
				return err
			}
			cp, err := newControlPlane(cmd.Context(), o, log, true)
			if err != nil {
				return err
			}
			defer cp.close()
			return runAll(cmd.Context(), log, cp.runners())
		},
	}
	o.addFlags(cmd.Flags(), "0.0.0.0:7070")
	return cmd
}

func newAgentCommand(g *globalFlags) *cobra.Command {
	o := &agentOptions{}
	var server, token string
	cmd := &cobra.Command{
		Use:   "agent --server https://HOST:7070 --token TOKEN",
		Short: "Run this host's node agent for a controller",
		Long: `agent joins the controller once with a token (berth token create on the controller),
keeps the client certificate it receives in --data-dir/pki, and from then on runs the
pods the controller assigns to this node. It keeps its pods running while the
controller is away and resyncs when it is back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("BERTH_TOKEN")
			}
			if !strings.HasPrefix(server, "https://") {
				return fmt.Errorf("--server %q: an agent talks to its controller over https://", server)
			}
			ctx := cmd.Context()
			if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
				return fmt.Errorf("data dir: %w", err)
			}
			tlsCfg, err := pki.EnsureNodeCredentials(ctx, server, token, o.nodeName, pki.Dir(o.dataDir))
			if err != nil {
				return err
			}
			agent, stop, err := newAgent(ctx, o, client.NewTLS(server, tlsCfg), log)
			if err != nil {
				return err
			}
			defer stop()
			log.Info("agent", "server", server, "node", o.nodeName, "dataDir", o.dataDir)
			return runAll(ctx, log, []namedRunner{{"agent", agent.Run}})
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "the controller, https://HOST:7070")
	cmd.Flags().StringVar(&token, "token", "", "join token (env BERTH_TOKEN); needed only until this node has joined")
	cmd.Flags().DurationVar(&o.shutdownDelay, "shutdown-delay", time.Second, "how long a removed pod keeps serving after leaving the Services, so every node's rules drop it before SIGTERM")
	o.addFlags(cmd.Flags(), true)
	return cmd
}

func newTokenCommand() *cobra.Command {
	var dataDir string
	root := &cobra.Command{Use: "token", Short: "Create, list and revoke join tokens (run on the controller's host)"}
	root.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the controller's data dir")
	tokens := func() (*pki.Tokens, error) {
		dir := pki.Dir(dataDir)
		ca, err := pki.LoadCA(dir)
		if err != nil {
			return nil, fmt.Errorf("%w (has `berth controller` run with this --data-dir?)", err)
		}
		return pki.NewTokens(dir, ca.Fingerprint()), nil
	}
	var ttl time.Duration
	var description string
	create := &cobra.Command{
		Use:   "create",
		Short: "Print a new join token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := tokens()
			if err != nil {
				return err
			}
			token, _, err := t.Create(description, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", pki.DefaultTokenTTL, "how long the token admits new nodes (0: until revoked)")
	create.Flags().StringVar(&description, "description", "", "what the token is for")
	list := &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := tokens()
			if err != nil {
				return err
			}
			infos, err := t.List()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tEXPIRES\tUSED BY\tDESCRIPTION")
			now := time.Now()
			for _, i := range infos {
				expires := "never"
				if !i.Expires.IsZero() {
					expires = i.Expires.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", i.ID, i.State(now), expires, orNone(strings.Join(i.UsedBy, ",")), i.Description)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: it admits no further node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := tokens()
			if err != nil {
				return err
			}
			return t.Revoke(args[0])
		},
	}
	root.AddCommand(create, list, revoke)
	return root
}

func newNodeActionCommand(g *globalFlags, action, short string) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   action + " NODE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), client.DefaultTimeout)
			defer cancel()
			if err := c.NodeAction(ctx, args[0], action); err != nil {
				return err
			}
			if action != "drain" {
				fmt.Fprintf(cmd.OutOrStdout(), "node/%s %sed\n", args[0], action)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node/%s cordoned; evicting its pods\n", args[0])
			return waitDrained(cmd, c, args[0], timeout)
		},
	}
	if action == "drain" {
		cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the node to empty")
	}
	return cmd
}

// waitDrained waits until the node runs no pod berth placed there.
func waitDrained(cmd *cobra.Command, c *client.Client, node string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		var nodes []api.NodeInfo
		ctx, cancel := context.WithTimeout(cmd.Context(), client.DefaultTimeout)
		err := c.List(ctx, "nodes", "", &nodes)
		cancel()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.Name != node {
				continue
			}
			if n.Pods == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "node/%s drained\n", node)
				return nil
			}
			if n.Pods != last {
				fmt.Fprintf(cmd.OutOrStdout(), "node/%s: %d pod(s) left\n", node, n.Pods)
				last = n.Pods
			}
		}
		if time.Now().After(deadline) {
			return errors.New("timed out waiting for the node to drain; it stays cordoned and draining")
		}
		select {
		case <-cmd.Context().Done():
			return cmd.Context().Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
