package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/backup"
)

func backupCmd(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Back up the pipelines' checkpoints and projections into one archive",
		Long: `backup writes what jetfold keeps in JetStream KV for the pipelines of the configuration
into one archive (tar+gzip): each pipeline's checkpoint (for a pipeline that runs in
partitions, each partition's), every key of the current version of each projection it
writes (with the headers that make a restore exactly-once), the version pointers of rebuilt
projections and the control entries (paused or not). Leases, health reports and a rebuild in
progress are left out.

The pipelines keep running: each pipeline's checkpoints are read first, then its keys, which
can be ahead of them; a restored pipeline (each partition) processes the events after its
checkpoint again and skips, per key, those the key already holds. A pipeline whose
checkpoints were written with another number of partitions than the configuration says is
refused. The streams are not in the archive: back them up with nats stream backup (or keep a
mirror), after this backup. Restore with processor restore. -o - writes the archive to
stdout.`,
		Args: backupUsageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &exitError{code: 2, err: errors.New("backup: -o FILE is required (the archive to write, - for stdout)")}
			}
			_, ps, conn, err := g.openExisting(cmd.Context(), g.stderr)
			if conn == nil {
				if err == nil {
					return &exitError{code: 1} // nothing ran yet: openExisting said so
				}
				return err
			}
			defer conn.Close()
			say := g.stdout
			var w io.Writer
			var commit func() error
			if out == "-" {
				w, say, commit = g.stdout, g.stderr, func() error { return nil }
			} else {
				f, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
				if err != nil {
					return fmt.Errorf("backup: %w", err)
				}
				defer os.Remove(f.Name()) // once renamed, nothing
				defer f.Close()
				w = f
				commit = func() error {
					if err := f.Sync(); err != nil {
						return err
					}
					if err := f.Close(); err != nil {
						return err
					}
					return os.Rename(f.Name(), out)
				}
			}
			cw := &backupByteCounter{w: w}
			m, err := backup.Write(cmd.Context(), conn.JS, backup.Options{Pipelines: ps, Jetfold: versionLine()}, cw)
			if err != nil {
				return err
			}
			if err := commit(); err != nil {
				return fmt.Errorf("backup: write %s: %w", out, err)
			}
			keys, buckets := 0, 0
			for _, b := range m.Buckets {
				if b.Projection != "" {
					keys += b.Keys
					buckets++
				}
			}
			fmt.Fprintf(say, "backup written to %s: %s, %s in %s, %s\n", out, backupNounCount(len(m.Pipelines), "pipeline"), backupNounCount(keys, "key"), backupNounCount(buckets, "bucket"), backupArchiveSize(cw.n))
			printBackupManifest(say, m)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "the archive to write (- for stdout)")
	cmd.SetFlagErrorFunc(backupUsageError)
	return cmd
}

// printBackupManifest prints, per pipeline of m, its checkpoint and projections.
func printBackupManifest(w io.Writer, m backup.Manifest) {
	for _, p := range m.Pipelines {
		switch cp := p.Checkpoint; {
		case len(p.Partitions) > 0:
			ahead := ""
			if p.KeysAhead > 0 {
				ahead = fmt.Sprintf(", %s ahead of the highest checkpoint (up to %d)", backupNounCount(p.KeysAhead, "key"), p.MaxKeySeq)
			}
			fmt.Fprintf(w, "pipeline %s: %d partitions (stream %s)%s\n", p.Name, len(p.Partitions), p.Stream, ahead)
			for _, pt := range p.Partitions {
				if pt.Checkpoint == nil {
					fmt.Fprintf(w, "  partition %d: never committed\n", pt.Index)
				} else {
					fmt.Fprintf(w, "  partition %d: checkpoint %d\n", pt.Index, pt.Checkpoint.Seq)
				}
			}
		case cp == nil:
			fmt.Fprintf(w, "pipeline %s: never committed (stream %s)\n", p.Name, p.Stream)
		case p.KeysAhead > 0:
			fmt.Fprintf(w, "pipeline %s: checkpoint %d (stream %s), %s ahead of it (up to %d)\n", p.Name, cp.Seq, p.Stream, backupNounCount(p.KeysAhead, "key"), p.MaxKeySeq)
		default:
			fmt.Fprintf(w, "pipeline %s: checkpoint %d (stream %s)\n", p.Name, cp.Seq, p.Stream)
		}
		for _, pr := range p.Projections {
			fmt.Fprintf(w, "  projection %s: bucket %s (version %d), %s\n", pr.Name, pr.Bucket, pr.Version, backupNounCount(pr.Keys, "key"))
		}
		if p.Paused {
			fmt.Fprintf(w, "  paused\n")
		}
		if p.RebuildSkipped > 0 {
			fmt.Fprintf(w, "  a rebuild into version %d was in progress: not kept, run it again after a restore\n", p.RebuildSkipped)
		}
	}
}

// backupUsageArgs makes cobra's argument errors usage errors (exit code 2).
func backupUsageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return backupUsageError(cmd, err)
		}
		return nil
	}
}

// backupUsageError is a usage error (exit code 2) that shows the command's usage line.
func backupUsageError(cmd *cobra.Command, err error) error {
	return &exitError{code: 2, err: fmt.Errorf("%s: %w\nusage: %s", cmd.Name(), err, cmd.UseLine())}
}

// backupByteCounter counts what is written through it.
type backupByteCounter struct {
	w io.Writer
	n int64
}

func (c *backupByteCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// backupNounCount returns "1 key", "2 keys".
func backupNounCount(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// backupArchiveSize returns n bytes in B, KiB or MiB.
func backupArchiveSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}
