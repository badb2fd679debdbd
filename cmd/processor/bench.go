package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/bench"
)

func benchCmd(g *globals) *cobra.Command {
	var o bench.Options
	var asJSON bool
	var cpuProfile, memProfile string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the raw JetStream consume rate and the pipeline rate in one run, on an embedded server",
		Long: `Publish the standard workload (1,000,000 JSON events of about 200 bytes over 10,000 keys,
4 event types, 1% emitting a derived event) to an embedded nats-server in a temporary
directory, read it with a plain consumer as fast as JetStream allows, then fold it with a
pipeline (4 fields, a handler per type, one emit) until the checkpoint reaches the head.
Reports both rates, their ratio, peak RSS and allocations per event. The two are measured
--rounds times, alternating, and the round of the median ratio is reported. --workload windows
or lookup also runs, after the fold in each round, the fold with a window and a timeout, or
with a lookup, and reports its rate next to the fold's. --latency instead
publishes at --rate events/s for --duration and reports publish-to-visible latency.

--replicas R runs the fold in R separate processes instead: this binary's "run -c" on a
generated configuration (lease_ttl --lease-ttl), against the embedded server on a loopback
port, with --partitions N (N > 1: each partition reads only its subjects of a stream whose
subject transform puts the partition first, source.partitioned_by_subject). Both take lists
(--partitions 1,2,4 --replicas 1,2): every pair runs once per round, in alternating order.
The pipeline starts paused; once every partition's lease is held and each process holds its
fair share, it is resumed, and the rate is from the resume until every partition's
checkpoint reaches its last event: process start-up and the hand-over of partitions are not
in the figure. The raw consume of the same stream is measured in the same round, and the CPU
per event is that of the children and of this process (which holds the server).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Logger = g.logger()
			o.MemoryLimit = true
			if len(o.Replicas) == 0 && len(o.Partitions) > 0 {
				return errors.New("--partitions needs --replicas")
			}
			if len(o.Replicas) > 0 && (cpuProfile != "" || memProfile != "") {
				return errors.New("--cpuprofile and --memprofile profile a pipeline in this process: with --replicas it runs in others (profile them with perf record -a)")
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				o.CPUProfile = f
			}
			if memProfile != "" {
				// Two allocation profiles around the pipeline phase: compare them with
				// go tool pprof -base FILE.start FILE.
				o.Phase = func(name string) {
					path := memProfile
					if name == "pipeline-start" {
						path += ".start"
					}
					if f, err := os.Create(path); err == nil {
						_ = pprof.Lookup("allocs").WriteTo(f, 0)
						_ = f.Close()
					}
				}
			}
			res, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printBench(g, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Events, "events", 1_000_000, "events in the workload")
	f.IntVar(&o.Keys, "keys", 10_000, "distinct keys")
	f.IntVar(&o.Batch.Size, "batch", 0, "pipeline batch size (default: the configuration default, 50000)")
	f.DurationVar(&o.Batch.MaxWait, "max-wait", 0, "pipeline batch max wait (default: the configuration default, 200ms)")
	f.IntVar(&o.Batch.CatchUp.Size, "catch-up-size", 0, "pipeline batch size while catching up (default: ten times the batch size)")
	f.DurationVar(&o.Batch.CatchUp.MaxWait, "catch-up-wait", 0, "pipeline batch max wait while catching up (default: ten times the max wait)")
	f.IntVar(&o.Rounds, "rounds", 3, "measure the raw consume and the pipeline this many times each, alternating; report the round of the median ratio")
	f.IntVar(&o.CacheKeys, "cache", 0, "state cache bound (default: --keys)")
	f.StringVar(&o.URL, "nats-url", "", "run against this NATS server instead of an embedded one (its bench streams are deleted first)")
	f.StringVar(&o.Workload, "workload", bench.WorkloadFold, "fold, windows (the fold plus a window and a timeout), stateful (the window and the timeout alone) or lookup (the fold plus a lookup): all but fold also run the fold alone, and report both")
	f.IntVar(&o.EventRate, "event-rate", 10_000, "events per second of event time (the events' ts field): how many events a window of --workload windows holds")
	f.BoolVar(&o.Latency, "latency", false, "latency mode")
	f.BoolVar(&o.Cold, "cold", false, "cold mode: publish twice --events; fold the second half with the runner that folded the first (warm cache), then with a new runner on the first half's projection (empty cache); report both rates and the new runner's time to its first commit")
	f.IntVar(&o.Rate, "rate", 10_000, "latency mode: events per second")
	f.DurationVar(&o.Duration, "duration", 0, "latency mode: how long to publish (default 30s)")
	f.IntSliceVar(&o.Replicas, "replicas", nil, "run the fold in this many processes of this binary (processor run; a list runs each: 1,2)")
	f.IntSliceVar(&o.Partitions, "partitions", nil, "with --replicas: partitions of the fold, by subject when more than 1 (a list runs each: 1,2,4; default 1)")
	f.DurationVar(&o.LeaseTTL, "lease-ttl", 2*time.Second, "with --replicas: the processes' processor.lease_ttl (a joining process is handed a partition every TTL/4)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the pipeline phase")
	f.StringVar(&memProfile, "memprofile", "", "write allocation profiles before (FILE.start) and after the pipeline phase")
	return cmd
}

func printBench(g *globals, r bench.Result) {
	w := g.stdout
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "latency at %d events/s for %s (%d events): p50 %s  p99 %s  max %s\n",
			l.Rate, l.Duration, l.Events, l.P50, l.P99, l.Max)
		return
	}
	if len(r.Replicas) > 0 {
		printReplicas(g, r)
		return
	}
	if c := r.Cold; c != nil {
		fmt.Fprintf(w, "workload:  %d events of %d bytes over %d keys, folded up to event %d, then on\n", 2*r.Events, r.PayloadBytes, r.Keys, r.Events)
		fmt.Fprintf(w, "raw:       %10.0f events/s  (plain consumer, AckNone, no decoding)\n", r.RawRate)
		fmt.Fprintf(w, "warm:      %10.0f events/s  (the runner that folded the first half goes on)\n", c.WarmRate)
		fmt.Fprintf(w, "cold:      %10.0f events/s  (a new runner, empty cache; first commit after %s)\n", c.ColdRate, c.FirstCommit.Round(time.Millisecond))
		fmt.Fprintf(w, "warm/cold: %10.2f", c.WarmToCold)
		printRatios(w, r.Rounds, "  (the median of %d rounds; cold/raw:", ")")
		fmt.Fprintln(w)
		return
	}
	fmt.Fprintf(w, "workload:  %d events of %d bytes over %d keys, %d derived events\n", r.Events, r.PayloadBytes, r.Keys, r.Emitted)
	fmt.Fprintf(w, "publish:   %10.0f events/s\n", r.PublishRate)
	fmt.Fprintf(w, "raw:       %10.0f events/s  (plain consumer, AckNone, no decoding)\n", r.RawRate)
	fmt.Fprintf(w, "pipeline:  %10.0f events/s  (fold + emit, committed to KV)\n", r.PipelineRate)
	fmt.Fprintf(w, "ratio:     %10.2f", r.Ratio)
	printRatios(w, r.Rounds, "  (the median of %d rounds:", "; the figures are its round's)")
	fmt.Fprintln(w)
	if r.WorkloadRate > 0 {
		fmt.Fprintf(w, "%-10s %10.0f events/s  (%.2f of the fold's rate, %.2f us CPU/event; rounds:", r.Workload+":", r.WorkloadRate, r.WorkloadToFold, float64(r.WorkloadCPUPerEvent)/1e3)
		for _, rr := range r.Rounds {
			fmt.Fprintf(w, " %.2f", rr.WorkloadToFold)
		}
		fmt.Fprintln(w, ")")
	}
	fmt.Fprintf(w, "peak RSS:  %10.1f MiB  (pipeline phase; with the embedded server unless --nats-url)\n", float64(r.PeakRSS)/(1<<20))
	fmt.Fprintf(w, "allocated: %10.0f B/event, %.1f allocs/event\n", r.AllocBytesPerEvent, r.AllocsPerEvent)
	fmt.Fprintf(w, "CPU:       %10.2f us/event  (pipeline phase; raw consume: %.2f; with the embedded server unless --nats-url)\n",
		float64(r.CPUPerEvent)/1e3, float64(r.RawCPUPerEvent)/1e3)
	fmt.Fprintf(w, "commits:   %10d  (%d projection keys written, %.2f per event)\n",
		r.Commits, r.KeysWritten, float64(r.KeysWritten)/float64(max(r.Events, 1)))
	if r.KVWriteRate > 0 {
		fmt.Fprintf(w, "kv writes: %10.0f keys/s  (as many CAS writes alone, no fold: they bound the pipeline at %.0f events/s; pipeline/bound %.2f)\n",
			r.KVWriteRate, r.KVBound, r.PipelineRate/r.KVBound)
	}
}

// printRatios writes, for more than one round, lead (formatted with the number of rounds),
// each round's ratio, then tail.
func printRatios(w io.Writer, rounds []bench.Round, lead, tail string) {
	if len(rounds) < 2 {
		return
	}
	fmt.Fprintf(w, lead, len(rounds))
	for _, rr := range rounds {
		fmt.Fprintf(w, " %.2f", rr.Ratio)
	}
	fmt.Fprint(w, tail)
}

// printReplicas prints the replicas mode's table: per case, the medians over the rounds and
// their ranges.
func printReplicas(g *globals, r bench.Result) {
	w := g.stdout
	rounds := len(r.Replicas[0].Rounds)
	fmt.Fprintf(w, "workload: %d events of %d bytes over %d keys; separate `processor run` processes; medians of %d rounds [min-max]\n",
		r.Events, r.PayloadBytes, r.Keys, rounds)
	fmt.Fprintf(w, "%-6s %-13s %-26s %-26s %-18s %-20s %-10s %s\n",
		"N x R", "layout", "pipeline events/s", "raw events/s", "ratio", "CPU us/event", "settled", "held")
	for _, c := range r.Replicas {
		span := func(f func(bench.ReplicaRound) float64) (lo, hi float64) {
			lo, hi = f(c.Rounds[0]), f(c.Rounds[0])
			for _, rr := range c.Rounds[1:] {
				lo, hi = min(lo, f(rr)), max(hi, f(rr))
			}
			return lo, hi
		}
		rateLo, rateHi := span(func(rr bench.ReplicaRound) float64 { return rr.Rate })
		rawLo, rawHi := span(func(rr bench.ReplicaRound) float64 { return rr.RawRate })
		ratioLo, ratioHi := span(func(rr bench.ReplicaRound) float64 { return rr.Ratio })
		cpuLo, cpuHi := span(func(rr bench.ReplicaRound) float64 { return float64(rr.CPUPerEvent) / 1e3 })
		held := make([]string, 0, len(c.Rounds))
		for _, rr := range c.Rounds {
			held = append(held, fmt.Sprint(rr.Held))
		}
		fmt.Fprintf(w, "%-6s %-13s %-26s %-26s %-18s %-20s %-10s %s\n",
			fmt.Sprintf("%d x %d", c.Partitions, c.Replicas), c.Layout,
			fmt.Sprintf("%.0f [%.0f-%.0f]", c.Rate, rateLo, rateHi),
			fmt.Sprintf("%.0f [%.0f-%.0f]", c.RawRate, rawLo, rawHi),
			fmt.Sprintf("%.2f [%.2f-%.2f]", c.Ratio, ratioLo, ratioHi),
			fmt.Sprintf("%.2f [%.2f-%.2f]", float64(c.CPUPerEvent)/1e3, cpuLo, cpuHi),
			c.Settle.Round(time.Millisecond).String(), strings.Join(held, " "))
	}
	fmt.Fprintln(w, "(rate: from the resume of the paused pipeline, every partition's lease held and each process at its fair share, until every partition's checkpoint is at its last event;")
	fmt.Fprintln(w, " CPU: the processes and this one, with the server, in that phase; settled: from starting the processes; held: partitions per process, each round)")
}
