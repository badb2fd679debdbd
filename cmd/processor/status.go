package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline"
	"github.com/jetfold/jetfold/pipeline/status"
)

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	var watch time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Per pipeline: checkpoint, stream head, lag, keys, last commit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, ps, conn, err := g.openExisting(cmd.Context(), g.stdout)
			if conn == nil {
				return err // nil when nothing was started yet: openExisting said so
			}
			defer conn.Close()
			for {
				var out []status.Status
				for _, p := range ps {
					st, err := pipeline.ReadStatus(cmd.Context(), conn.JS, p)
					if err != nil {
						if watch > 0 && cmd.Context().Err() != nil {
							return nil // Ctrl-C while watching
						}
						return fmt.Errorf("status of %s: %w", p.Name, err)
					}
					out = append(out, st)
				}
				if watch > 0 && isTerminal(g.stdout) {
					fmt.Fprint(g.stdout, "\033[H\033[2J") // clear the screen: the table redrawn in place
				}
				if err := printStatus(g, out, asJSON); err != nil {
					return err
				}
				if watch <= 0 {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(watch):
				}
				if !isTerminal(g.stdout) && !asJSON {
					fmt.Fprintln(g.stdout)
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&watch, "watch", 0, "print it again at this interval (such as 2s) until interrupted")
	return cmd
}

// printStatus prints the statuses as a table, or JSON.
func printStatus(g *globals, out []status.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tSTREAM\tCHECKPOINT\tHEAD\tLAG\tKEYS\tDEAD LETTERS\tLAST COMMIT\tSTATE")
	for _, st := range out {
		last := "never"
		if st.LastCommit != nil {
			last = st.LastCommit.UTC().Format(time.RFC3339)
		}
		state := stateText(st.State)
		if st.Paused && st.State != status.Paused {
			state = "pausing (" + state + ")" // asked; the process running it has not said so yet
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", st.Pipeline, st.Stream, st.Checkpoint, st.Head, st.Lag, keys(st.Keys, st.Versions), st.DeadLetters, last, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printPartitions(g, out); err != nil {
		return err
	}
	for _, st := range out {
		if st.DeadLetters > 0 && st.DeadLetters*2 > st.Checkpoint {
			fmt.Fprintf(g.stdout, "WARNING: most events of %s were dead-lettered (%d of %d): processor dlq -c %s %s list\n", st.Pipeline, st.DeadLetters, st.Checkpoint, g.config, st.Pipeline)
		}
		if st.State == status.Failing {
			fmt.Fprintf(g.stdout, "pipeline %s failing since %s (%s): %s\n", st.Pipeline, st.Since.UTC().Format(time.RFC3339), st.Instance, st.Error)
		}
		if st.Paused {
			by := ""
			if st.PausedBy != "" {
				by = " by " + st.PausedBy
			}
			fmt.Fprintf(g.stdout, "pipeline %s paused%s: processor resume -c %s %s\n", st.Pipeline, by, g.config, st.Pipeline)
		}
		if rb := st.Rebuild; rb != nil {
			fmt.Fprintf(g.stdout, "rebuild of %s to version %d: at %d of %d, since %s (%s)\n", st.Pipeline, rb.Version, rb.Checkpoint, st.Checkpoint, rb.Started.UTC().Format(time.RFC3339), rb.By)
		}
	}
	return nil
}

// stateText is how status shows a pipeline's or a partition's state: "not started" when none
// was reported.
func stateText(state string) string {
	if state == "" {
		return "not started"
	}
	return state
}

// printPartitions prints, for each partitioned pipeline, which replica holds which partition
// and its lag.
func printPartitions(g *globals, out []status.Status) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	header := false
	for _, st := range out {
		for _, p := range st.Partitions {
			if !header {
				fmt.Fprintln(tw, "\nPIPELINE\tPARTITION\tCHECKPOINT\tLAG\tSTATE\tINSTANCE")
				header = true
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\n", st.Pipeline, p.Partition, p.Checkpoint, p.Lag, stateText(p.State), p.Instance)
		}
	}
	return tw.Flush()
}

// keys lists the keys per projection, with the version of those rebuilt ("carts=12 (v2)").
func keys(m map[string]uint64, versions map[string]int) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s=%d", n, m[n])
		if v := versions[n]; v > 1 {
			parts[i] += fmt.Sprintf(" (v%d)", v)
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}
