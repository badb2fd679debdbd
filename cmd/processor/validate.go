package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate",
		Short: "Check a configuration file: every problem as file:line:col: message (exit 1), or a summary (exit 0)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, ps, err := g.load()
			if err != nil {
				return err
			}
			ops, projections := 0, 0
			for _, p := range ps {
				for _, w := range p.Warnings {
					fmt.Fprintln(g.stderr, w)
				}
				ops += len(p.Config.Operators)
				projections += len(p.Projections)
			}
			fmt.Fprintf(g.stdout, "%s: valid: %d streams, %d pipelines, %d operators, %d projections\n",
				g.config, len(cfg.Streams), len(ps), ops, projections)
			return nil
		},
	}
}
