package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }

// Main runs the command line args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mainContext(ctx, args, stdout, stderr)
}

// mainContext is [Main] with the context that SIGINT and SIGTERM would cancel.
func mainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "error:", err)
	return 1
}

// globals are the flags every command shares.
type globals struct {
	config   string
	logLevel string
	logJSON  bool
	stdout   io.Writer
	stderr   io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "processor",
		Short:         "jetfold: fold NATS JetStream streams into key-value projections",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	setVersion(root) // --version: root.Version and its template, see version.go
	pf := root.PersistentFlags()
	pf.StringVarP(&g.config, "config", "c", "jetfold.yaml", "configuration file")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.BoolVar(&g.logJSON, "log-json", false, "log as JSON lines")
	root.AddCommand(runCmd(g), validateCmd(g), getCmd(g), statusCmd(g), publishCmd(g), benchCmd(g))
	root.AddCommand(dlqCmd(g), versionCmd(g), historyCmd(g), testCmd(g), rebuildCmd(g))
	return root
}
