// Command berth is GitOps for plain Linux hosts running Podman. This package
// is flags and wiring only; the work lives in reconciler/, sources/ and
// nodeagent/.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}

type globalFlags struct {
	server   string
	logLevel string
	// TLS credentials for a controller serving https (berth controller):
	// explicit files, or the admin bundle under --admin-dir.
	caFile, certFile, keyFile string
	adminDataDir              string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "berth",
		Short:         "GitOps for plain Linux hosts running Podman",
		Long:          "berth follows a Git repository of ordinary Kubernetes manifests and runs them on Podman hosts.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	defaultServer := os.Getenv("BERTH_SERVER")
	if defaultServer == "" {
		defaultServer = "http://127.0.0.1:7070"
	}
	root.PersistentFlags().StringVar(&g.server, "server", defaultServer, "controller API address (env BERTH_SERVER)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.caFile, "ca", os.Getenv("BERTH_CA"), "CA certificate of an https controller (env BERTH_CA)")
	root.PersistentFlags().StringVar(&g.certFile, "cert", os.Getenv("BERTH_CERT"), "client certificate for an https controller (env BERTH_CERT)")
	root.PersistentFlags().StringVar(&g.keyFile, "key", os.Getenv("BERTH_KEY"), "client key for an https controller (env BERTH_KEY)")
	root.PersistentFlags().StringVar(&g.adminDataDir, "admin-dir", defaultDataDir(), "controller data dir whose admin certificate the CLI uses for https (when --ca/--cert/--key are not given)")
	root.AddCommand(
		newUpCommand(g),
		newStatusCommand(g),
		newGetCommand(g),
		newSyncCommand(g),
		newHistoryCommand(g),
		newValidateCommand(),
		newCleanupCommand(g),
		newControllerCommand(g),
		newAgentCommand(g),
		newTokenCommand(),
		newNodeActionCommand(g, "cordon", "Mark a node unschedulable"),
		newNodeActionCommand(g, "uncordon", "Mark a node schedulable again"),
		newNodeActionCommand(g, "drain", "Cordon a node and move its pods elsewhere, within each Deployment's maxUnavailable"),
	)
	return root
}

func (g *globalFlags) logger() (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(g.logLevel))); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})), nil
}
