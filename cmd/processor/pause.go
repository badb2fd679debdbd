package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline/control"
)

// pauseCmd returns `processor pause` (paused true) or `processor resume` (false).
func pauseCmd(g *globals, paused bool) *cobra.Command {
	use, short := "pause PIPELINE", "Pause a pipeline in every process that runs it: it commits what it has in hand and reads nothing more"
	if !paused {
		use, short = "resume PIPELINE", "Resume a paused pipeline"
	}
	var by string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			// The name first: with an embedded server, connecting starts it.
			_, ps, err := g.load()
			if err != nil {
				return err
			}
			if _, err := g.pipelineNamed(ps, name); err != nil {
				return err
			}
			_, _, conn, err := g.openExisting(cmd.Context(), g.stdout)
			if conn == nil {
				return err
			}
			defer conn.Close()
			if by == "" {
				by = os.Getenv("USER")
			}
			if err := control.Set(cmd.Context(), conn.JS, name, control.State{Paused: paused, By: by}); err != nil {
				return err
			}
			if paused {
				fmt.Fprintf(g.stdout, "paused %s: the process that runs it commits what it has in hand and reads nothing more (processor status shows it; processor resume -c %s %s)\n", name, g.config, name)
			} else {
				fmt.Fprintf(g.stdout, "resumed %s\n", name)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "who asks, shown by status (default: $USER)")
	return cmd
}
