package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline"
)

func getCmd(g *globals) *cobra.Command {
	var meta bool
	cmd := &cobra.Command{
		Use:   "get PROJECTION KEY",
		Short: "Print the state of a key of a projection as JSON",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, _, conn, err := g.open(cmd.Context(), nil)
			if err != nil {
				return err
			}
			defer conn.Close()
			st, err := pipeline.ReadState(cmd.Context(), conn.JS, args[0], args[1])
			if errors.Is(err, pipeline.ErrNoState) {
				return &exitError{code: 2, err: fmt.Errorf("%s/%s: no state", args[0], args[1])}
			}
			if err != nil {
				return err
			}
			if meta {
				fmt.Fprintf(g.stdout, "# seq %d, revision %d\n", st.Seq, st.Revision)
			}
			fmt.Fprintln(g.stdout, string(st.Value))
			return nil
		},
	}
	cmd.Flags().BoolVar(&meta, "meta", false, "also print the source sequence and KV revision")
	return cmd
}
