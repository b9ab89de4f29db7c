package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"berth.dev/berth/api/client"
	"berth.dev/berth/nodeagent"
	"berth.dev/berth/nodeagent/hostsetup"
	"berth.dev/berth/nodeagent/proxy"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/reconciler/controller"
	"berth.dev/berth/reconciler/server"
	"berth.dev/berth/reconciler/store"
	"berth.dev/berth/sources"
)

type upOptions struct {
	source        sources.Spec
	interval      time.Duration
	dataDir       string
	listen        string
	podman        string
	webhookSecret string
	nodeName      string
	nodeGrace     time.Duration
	serviceCIDR   string
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/berth"
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "berth")
	}
	return ".berth"
}

func newUpCommand(g *globalFlags) *cobra.Command {
	o := &upOptions{}
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "up --repo URL|DIR",
		Short: "Run the controller, this host's agent and the embedded store in one process",
		Long: `up runs everything one host needs: it follows the repository, plans rollouts,
stores its state under --data-dir and runs the pods on this host through Podman.
The local agent talks to the controller through the same HTTP API a remote agent uses.

--repo is a Git URL (file://, https://, ssh://) or a local folder. A folder that is a
Git repository follows --branch; a plain folder is watched and applied on save.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if o.source.Repo == "" {
				return errors.New("--repo is required")
			}
			if v := os.Getenv("BERTH_WEBHOOK_SECRET"); o.webhookSecret == "" {
				o.webhookSecret = v
			}
			if v := os.Getenv("BERTH_GIT_TOKEN"); o.source.Auth.Token == "" {
				o.source.Auth.Token = v
			}
			// Passphrases never go on a command line, where ps shows them.
			o.source.Auth.SSHKeyPassphrase = os.Getenv("BERTH_SSH_KEY_PASSPHRASE")
			return runUp(cmd.Context(), o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.source.Repo, "repo", "", "Git URL or local folder to follow")
	f.StringVar(&o.source.Branch, "branch", "main", "branch to follow")
	f.StringVar(&o.source.Path, "path", "", "sub-path of the repository holding the manifests")
	f.DurationVar(&o.interval, "interval", 30*time.Second, "how often to fetch the repository")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where berth keeps its store, Git cache and pod files")
	f.StringVar(&o.listen, "listen", "127.0.0.1:7070", "address of the API, the webhook and the local agent's connection")
	f.StringVar(&o.podman, "podman", "unix:///run/podman/podman.sock", "Podman API socket; when none answers there, berth starts its own service")
	f.StringVar(&o.webhookSecret, "webhook-secret", "", "HMAC secret for POST /hooks/git (env BERTH_WEBHOOK_SECRET)")
	f.StringVar(&o.nodeName, "node-name", host, "name of this host as a node")
	f.DurationVar(&o.nodeGrace, "node-grace", 40*time.Second, "how long a node may miss reports before it is NotReady")
	f.StringVar(&o.serviceCIDR, "service-cidr", "10.96.0.0/16", "range ClusterIPs are allocated from")
	f.StringVar(&o.source.Auth.CAFile, "git-ca-file", "", "CA bundle for an https:// repository with a private CA")
	f.StringVar(&o.source.Auth.Username, "git-username", "", "user name sent with --git-token (default git)")
	f.StringVar(&o.source.Auth.Token, "git-token", "", "HTTPS access token (env BERTH_GIT_TOKEN)")
	f.StringVar(&o.source.Auth.SSHKeyFile, "ssh-key", "", "SSH private key for ssh:// repositories")
	f.StringVar(&o.source.Auth.KnownHostsFile, "known-hosts", "", "known_hosts file for ssh:// repositories (required for ssh)")
	return cmd
}

func runUp(ctx context.Context, o *upOptions, log *slog.Logger) error {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	o.source.CacheDir = filepath.Join(o.dataDir, "git")
	src, err := sources.Open(o.source, log.With("component", "source"))
	if err != nil {
		return err
	}
	cidr, err := netip.ParsePrefix(o.serviceCIDR)
	if err != nil || !cidr.Addr().Is4() {
		return fmt.Errorf("--service-cidr %q: want an IPv4 CIDR such as 10.96.0.0/16", o.serviceCIDR)
	}
	db, err := store.Open(filepath.Join(o.dataDir, "berth.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctrl, err := controller.New(ctx, controller.Config{
		Source:       src,
		Store:        db,
		Logger:       log.With("component", "controller"),
		PollInterval: o.interval,
		NodeGrace:    o.nodeGrace,
		ServiceCIDR:  cidr.Masked(),
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	srv := &http.Server{
		Handler:           server.New(ctrl, server.Options{WebhookSecret: o.webhookSecret, Logger: log.With("component", "api")}),
		ReadHeaderTimeout: 10 * time.Second,
	}

	socket, stopPodman, err := podmanSocket(ctx, o, log)
	if err != nil {
		return err
	}
	defer stopPodman()
	rt, err := podman.New(ctx, socket, log.With("component", "podman"), podman.Options{})
	if err != nil {
		return err
	}
	svcProxy, err := proxy.New(proxy.Config{Logger: log.With("component", "proxy")})
	if err != nil {
		return err
	}
	agent, err := nodeagent.New(nodeagent.Config{
		NodeName:     o.nodeName,
		DataDir:      filepath.Join(o.dataDir, "agent"),
		Runtime:      rt,
		Services:     svcProxy,
		ControlPlane: client.New("http://"+ln.Addr().String(), nil),
		Logger:       log.With("component", "agent", "node", o.nodeName),
	})
	if err != nil {
		return err
	}

	log.Info("berth up", "source", src.String(), "listen", ln.Addr().String(), "podman", socket, "node", o.nodeName, "dataDir", o.dataDir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	run("api", func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	run("controller", func() error { return ctrl.Run(ctx) })
	run("agent", func() error { return agent.Run(ctx) })

	<-ctx.Done()
	// Pods keep running: stopping berth is not an instruction to stop the
	// workloads, exactly as stopping a kubelet is not.
	log.Info("shutting down; pods keep running")
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	srv.Shutdown(shutdownCtx)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// podmanSocket returns a Podman API socket that answers: the one asked for,
// or a service berth starts itself with its own containers.conf.
func podmanSocket(ctx context.Context, o *upOptions, log *slog.Logger) (string, func(), error) {
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := podman.Ping(pingCtx, o.podman)
	cancel()
	if err == nil {
		return o.podman, func() {}, nil
	}
	dir := filepath.Join(o.dataDir, "podman")
	own := "unix://" + filepath.Join(dir, "podman.sock")
	pingCtx, cancel = context.WithTimeout(ctx, 3*time.Second)
	ownErr := podman.Ping(pingCtx, own)
	cancel()
	if ownErr == nil {
		// Left running by a berth that was killed: it serves the same
		// storage, so adopt it rather than start a second one.
		log.Info("reusing the Podman service berth started before", "socket", own)
		return own, func() {}, nil
	}
	log.Info("no Podman service answers; starting one", "tried", o.podman, "err", err)
	conf, err := hostsetup.WriteContainersConf(dir)
	if err != nil {
		return "", nil, err
	}
	svc, err := podman.StartService(ctx, podman.ServiceOptions{
		Socket:         filepath.Join(dir, "podman.sock"),
		ContainersConf: conf,
		Logger:         log.With("component", "podman-service"),
	})
	if err != nil {
		return "", nil, fmt.Errorf("start podman service (is Podman installed? run `make setup`): %w", err)
	}
	return svc.URI(), func() { svc.Stop() }, nil
}
