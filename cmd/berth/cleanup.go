package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"berth.dev/berth/nodeagent/proxy"
)

func newCleanupCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "cleanup",
		Short: "Remove every iptables rule and chain berth wrote on this host",
		Long: `cleanup removes berth's Service rules (the BERTH-* chains and the jumps to them)
from this host, leaving every other rule as it was. Run it after stopping berth for
good; a running berth writes the rules again on its next sync. Pods are not touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			p, err := proxy.New(proxy.Config{Logger: log})
			if err != nil {
				return err
			}
			if err := p.Cleanup(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "berth's iptables rules removed")
			return nil
		},
	}
}
