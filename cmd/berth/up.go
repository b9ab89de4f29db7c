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
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"berth.dev/berth/api/client"
	"berth.dev/berth/nodeagent"
	"berth.dev/berth/nodeagent/hostsetup"
	"berth.dev/berth/nodeagent/netroute"
	"berth.dev/berth/nodeagent/proxy"
	"berth.dev/berth/nodeagent/runtime/podman"
	"berth.dev/berth/reconciler/controller"
	"berth.dev/berth/reconciler/server"
	"berth.dev/berth/reconciler/store"
	"berth.dev/berth/sources"
)

// controllerOptions are the flags of the control plane (`up`, `controller`).
type controllerOptions struct {
	source        sources.Spec
	interval      time.Duration
	dataDir       string
	listen        string
	webhookSecret string
	nodeGrace     time.Duration
	serviceCIDR   string
}

// agentOptions are the flags of a node agent (`up`, `agent`).
type agentOptions struct {
	dataDir   string
	podman    string
	nodeName  string
	labels    string
	address   string
	podSubnet string
	// shutdownDelay: see nodeagent.Config.ShutdownDelay; only `agent` sets it.
	shutdownDelay time.Duration
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

func defaultNodeName() string {
	host, _ := os.Hostname()
	return strings.ToLower(host)
}

func (o *controllerOptions) addFlags(f *pflag.FlagSet, listen string) {
	f.StringVar(&o.source.Repo, "repo", "", "Git URL or local folder to follow")
	f.StringVar(&o.source.Branch, "branch", "main", "branch to follow")
	f.StringVar(&o.source.Path, "path", "", "sub-path of the repository holding the manifests")
	f.DurationVar(&o.interval, "interval", 30*time.Second, "how often to fetch the repository")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where berth keeps its store, Git cache, certificates and pod files")
	f.StringVar(&o.listen, "listen", listen, "address of the API and the webhook")
	f.StringVar(&o.webhookSecret, "webhook-secret", "", "HMAC secret for POST /hooks/git (env BERTH_WEBHOOK_SECRET)")
	f.DurationVar(&o.nodeGrace, "node-grace", 40*time.Second, "how long a node may miss reports before it is NotReady and its pods are replaced")
	f.StringVar(&o.serviceCIDR, "service-cidr", "10.96.0.0/16", "range ClusterIPs are allocated from")
	f.StringVar(&o.source.Auth.CAFile, "git-ca-file", "", "CA bundle for an https:// repository with a private CA")
	f.StringVar(&o.source.Auth.Username, "git-username", "", "user name sent with --git-token (default git)")
	f.StringVar(&o.source.Auth.Token, "git-token", "", "HTTPS access token (env BERTH_GIT_TOKEN)")
	f.StringVar(&o.source.Auth.SSHKeyFile, "ssh-key", "", "SSH private key for ssh:// repositories (passphrase in env BERTH_SSH_KEY_PASSPHRASE)")
	f.StringVar(&o.source.Auth.KnownHostsFile, "known-hosts", "", "known_hosts file for ssh:// repositories (required for ssh)")
}

// fromEnv fills secrets that should not appear on a command line, where ps
// shows them.
func (o *controllerOptions) fromEnv() error {
	if o.source.Repo == "" {
		return errors.New("--repo is required")
	}
	if v := os.Getenv("BERTH_WEBHOOK_SECRET"); o.webhookSecret == "" {
		o.webhookSecret = v
	}
	if v := os.Getenv("BERTH_GIT_TOKEN"); o.source.Auth.Token == "" {
		o.source.Auth.Token = v
	}
	o.source.Auth.SSHKeyPassphrase = os.Getenv("BERTH_SSH_KEY_PASSPHRASE")
	return nil
}

func (o *agentOptions) addFlags(f *pflag.FlagSet, withDataDir bool) {
	if withDataDir {
		f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "where the agent keeps its credentials, state and pod files")
	}
	f.StringVar(&o.podman, "podman", "unix:///run/podman/podman.sock", "Podman API socket; when none answers there, berth starts its own service")
	f.StringVar(&o.nodeName, "node-name", defaultNodeName(), "name of this host as a node")
	f.StringVar(&o.labels, "labels", "", "node labels, k=v,... (for nodeSelector and node affinity)")
	f.StringVar(&o.address, "address", "", "address other nodes reach this one at (default: the source address of the default route)")
	f.StringVar(&o.podSubnet, "pod-subnet", "", "this node's pod subnet, distinct per host (default: read from its Podman network); used for the Podman service berth starts")
}

func newUpCommand(g *globalFlags) *cobra.Command {
	co := &controllerOptions{}
	ao := &agentOptions{}
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
			if err := co.fromEnv(); err != nil {
				return err
			}
			ao.dataDir = co.dataDir
			return runUp(cmd.Context(), co, ao, log)
		},
	}
	co.addFlags(cmd.Flags(), "127.0.0.1:7070")
	ao.addFlags(cmd.Flags(), false)
	return cmd
}

func runUp(ctx context.Context, co *controllerOptions, ao *agentOptions, log *slog.Logger) error {
	cp, err := newControlPlane(ctx, co, log, false)
	if err != nil {
		return err
	}
	defer cp.close()
	agent, stopAgent, err := newAgent(ctx, ao, client.New("http://"+cp.ln.Addr().String(), nil), log)
	if err != nil {
		return err
	}
	defer stopAgent()
	return runAll(ctx, log, append(cp.runners(), namedRunner{"agent", agent.Run}))
}

// controlPlane is a controller with its store and API listener.
type controlPlane struct {
	ctrl *controller.Controller
	db   *store.DB
	srv  *http.Server
	ln   net.Listener
	log  *slog.Logger
}

func newControlPlane(ctx context.Context, o *controllerOptions, log *slog.Logger, secure bool) (*controlPlane, error) {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	cidr, err := netip.ParsePrefix(o.serviceCIDR)
	if err != nil || !cidr.Addr().Is4() {
		return nil, fmt.Errorf("--service-cidr %q: want an IPv4 CIDR such as 10.96.0.0/16", o.serviceCIDR)
	}
	o.source.CacheDir = filepath.Join(o.dataDir, "git")
	src, err := sources.Open(o.source, log.With("component", "source"))
	if err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(o.dataDir, "berth.db"))
	if err != nil {
		return nil, err
	}
	ctrl, err := controller.New(ctx, controller.Config{
		Source:       src,
		Store:        db,
		Logger:       log.With("component", "controller"),
		PollInterval: o.interval,
		NodeGrace:    o.nodeGrace,
		ServiceCIDR:  cidr.Masked(),
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	opts := server.Options{WebhookSecret: o.webhookSecret, Logger: log.With("component", "api")}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("listen on %s: %w", o.listen, err)
	}
	if secure {
		tlsLn, auth, err := secureListener(ln, o.dataDir, o.listen)
		if err != nil {
			ln.Close()
			db.Close()
			return nil, err
		}
		ln, opts.Authority = tlsLn, auth
	}
	srv := &http.Server{Handler: server.New(ctrl, opts), ReadHeaderTimeout: 10 * time.Second}
	log.Info("controller", "source", src.String(), "listen", ln.Addr().String(), "tls", secure, "dataDir", o.dataDir)
	return &controlPlane{ctrl: ctrl, db: db, srv: srv, ln: ln, log: log}, nil
}

func (cp *controlPlane) runners() []namedRunner {
	return []namedRunner{
		{"api", func(ctx context.Context) error {
			go func() {
				<-ctx.Done()
				shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer done()
				cp.srv.Shutdown(shutdownCtx)
			}()
			if err := cp.srv.Serve(cp.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
		{"controller", cp.ctrl.Run},
	}
}

func (cp *controlPlane) close() { cp.db.Close() }

// newAgent wires an agent for this host: Podman (started if needed), the
// Service proxy and the control plane it reports to.
func newAgent(ctx context.Context, o *agentOptions, cp nodeagent.ControlPlane, log *slog.Logger) (*nodeagent.Agent, func(), error) {
	labels, err := parseLabels(o.labels)
	if err != nil {
		return nil, nil, err
	}
	socket, stopPodman, err := podmanSocket(ctx, o.podman, o.dataDir, o.podSubnet, log)
	if err != nil {
		return nil, nil, err
	}
	rt, err := podman.New(ctx, socket, log.With("component", "podman"), podman.Options{})
	if err != nil {
		stopPodman()
		return nil, nil, err
	}
	svcProxy, err := proxy.New(proxy.Config{Logger: log.With("component", "proxy")})
	if err != nil {
		stopPodman()
		return nil, nil, err
	}
	cfg := nodeagent.Config{
		NodeName:     o.nodeName,
		DataDir:      filepath.Join(o.dataDir, "agent"),
		Runtime:      rt,
		Services:     svcProxy,
		ControlPlane: cp,
		Labels:       labels,
		Logger:       log.With("component", "agent", "node", o.nodeName),
	}
	if o.address != "" {
		cfg.Addresses = []string{o.address}
	}
	cfg.PodSubnet = o.podSubnet
	cfg.ShutdownDelay = o.shutdownDelay
	if cfg.Routes, err = netroute.New(netroute.Config{Logger: log.With("component", "routes")}); err != nil {
		stopPodman()
		return nil, nil, err
	}
	agent, err := nodeagent.New(cfg)
	if err != nil {
		stopPodman()
		return nil, nil, err
	}
	return agent, stopPodman, nil
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

type namedRunner struct {
	name string
	run  func(ctx context.Context) error
}

// runAll runs every runner until ctx ends or one fails, then stops them all.
func runAll(ctx context.Context, log *slog.Logger, flat []namedRunner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(flat))
	for _, r := range flat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		}()
	}
	<-ctx.Done()
	// Pods keep running: stopping berth is not an instruction to stop the
	// workloads, exactly as stopping a kubelet is not.
	log.Info("shutting down; pods keep running")
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// podmanSocket returns a Podman API socket that answers: the one asked for,
// one berth started earlier, or a service berth starts now with its own
// containers.conf.
func podmanSocket(ctx context.Context, want, dataDir, podSubnet string, log *slog.Logger) (string, func(), error) {
	pingCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := podman.Ping(pingCtx, want)
	cancel()
	if err == nil {
		return want, func() {}, nil
	}
	dir := filepath.Join(dataDir, "podman")
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
	log.Info("no Podman service answers; starting one", "tried", want, "err", err)
	conf, err := hostsetup.WriteContainersConf(dir, podSubnet)
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
