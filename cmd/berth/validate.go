package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"berth.dev/berth/reconciler/manifest"
	"berth.dev/berth/sources"
)

func newValidateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Decode and validate the manifests under DIR (default .) as berth would",
		Long: `validate reads every .yaml, .yml and .json file under DIR, recursively, and checks
it exactly as the controller checks a new revision. It prints every error and warning
with file, object and field, and exits non-zero when the revision would be refused.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			files, err := sources.ReadDir(dir)
			if err != nil {
				return err
			}
			set, err := manifest.NewDecoder().Load(files)
			var diags manifest.Errors
			if errors.As(err, &diags) {
				for _, d := range diags {
					fmt.Fprintln(cmd.OutOrStdout(), d.String())
				}
				return fmt.Errorf("%s: %d error(s); berth would refuse this revision", filepath.Clean(dir), diags.ErrorCount())
			}
			if err != nil {
				return err
			}
			for _, w := range set.Warnings {
				fmt.Fprintln(cmd.OutOrStdout(), w.String())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d file(s), %d object(s) valid, %d warning(s)\n", filepath.Clean(dir), len(files),
				len(set.Namespaces)+len(set.Pods)+len(set.Deployments)+len(set.ConfigMaps)+len(set.Secrets)+len(set.Services), len(set.Warnings))
			return nil
		},
	}
}
