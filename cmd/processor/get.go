package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline/state"
)

func getCmd(g *globals) *cobra.Command {
	var meta bool
	cmd := &cobra.Command{
		Use:   "get PROJECTION KEY",
		Short: "Print the state of a key of a projection as JSON",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			proj, key := args[0], args[1]
			_, ps, err := g.load()
			if err != nil {
				return err
			}
			if known := projections(ps); !slices.Contains(known, proj) {
				return fmt.Errorf("unknown projection %q: %s has %s", proj, g.config, strings.Join(known, ", "))
			}
			if key == "" {
				return errors.New("the key is empty: a projection holds no state for an empty key")
			}
			_, _, conn, err := g.openExisting(cmd.Context(), g.stderr)
			if err != nil {
				return err
			}
			if conn == nil {
				return &exitError{code: 2} // nothing ran yet: openExisting said so
			}
			defer conn.Close()
			st, err := state.Read(cmd.Context(), conn.JS, proj, key)
			if errors.Is(err, state.ErrNoState) {
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
