package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline/state"
)

func getCmd(g *globals) *cobra.Command {
	var (
		meta bool
		f    replayFlags
	)
	cmd := &cobra.Command{
		Use:   "get PROJECTION KEY",
		Short: "Print the state of a key of a projection as JSON",
		Long: `get prints the state of a key as its projection holds it.

With --at, it prints the state the key had just after a position of the source: a stream
sequence, or an RFC3339 time, which stands for the last sequence the stream stored at or
before it (by the message's stream time, not the pipeline's event time). The state is
computed, not read: the source is replayed from the pipeline's source.start up to there
through the pipeline's own operators, in memory. Nothing is written or published. Every
event of the source is read, unless --subject narrows it to subjects that hold every event
of the key.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			proj, key := args[0], args[1]
			if f.at != "" {
				return g.getAt(cmd.Context(), proj, key, f, meta)
			}
			if len(f.subjects) > 0 || f.from > 0 {
				return errors.New("--subject and --from go with --at")
			}
			_, conn, err := g.openProjection(cmd.Context(), proj, key)
			if err != nil {
				return err
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
	cmd.Flags().BoolVar(&meta, "meta", false, "also print the source sequence and KV revision (with --at: the position and the events replayed)")
	f.add(cmd.Flags(), "the state just after this source sequence, or the last one stored at or before this RFC3339 time, replayed")
	return cmd
}
