package main

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/casetest"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
)

func testCmd(g *globals) *cobra.Command {
	var parallel int
	var update bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "test CASES.yaml...",
		Short: "Run test cases: events in, expected projections, derived events and dead letters out (exit 1 when one fails, 2 when they cannot run)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(g.config, config.LoadOptions{})
			if cfg == nil || err != nil {
				return &exitError{code: 2, err: err}
			}
			var log *slog.Logger // the pipelines' logs only when asked for
			if cmd.Flags().Changed("log-level") || g.logJSON {
				log = g.logger()
			}
			e, err := casetest.New(cfg, casetest.Options{Logger: log, Parallel: parallel, Timeout: timeout})
			if err != nil {
				return &exitError{code: 2, err: diag.Join(err)}
			}
			files, err := e.Load(args...)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			var cases []*casetest.Case
			for _, f := range files {
				cases = append(cases, f.Cases...)
			}
			passed, failed, updated := 0, 0, 0
			results := e.RunAll(cmd.Context(), cases, func(r casetest.Result) {
				switch {
				case r.Passed():
					passed++
					r.WriteReport(g.stdout)
				case update && r.Err == nil:
					updated++
					fmt.Fprintf(g.stdout, "UPDATE %s (%.2fs)\n", r.Case.Name, r.Duration.Seconds())
					r.WriteDiff(g.stdout)
				default:
					failed++
					r.WriteReport(g.stdout)
				}
			})
			var uerr error
			if update {
				var todo []casetest.Result
				for _, r := range results {
					if !r.Passed() && r.Err == nil {
						todo = append(todo, r)
					}
				}
				for _, f := range files {
					n, err := e.Update(f, todo)
					uerr = errors.Join(uerr, err)
					if n > 0 {
						fmt.Fprintf(g.stdout, "updated %d cases in %s\n", n, f.Path)
					}
				}
			}
			summary := fmt.Sprintf("%d passed, %d failed", passed, failed)
			if update {
				summary += fmt.Sprintf(", %d updated", updated)
			}
			fmt.Fprintln(g.stdout, summary)
			switch {
			case uerr != nil:
				return &exitError{code: 2, err: uerr}
			case failed > 0:
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&parallel, "parallel", "p", runtime.GOMAXPROCS(0), "cases run at once, each on a server of its own")
	cmd.Flags().BoolVar(&update, "update", false, "write what the pipelines did into the expect sections of the failing cases")
	cmd.Flags().DurationVar(&timeout, "timeout", casetest.DefaultTimeout, "the longest one case may take")
	return cmd
}
