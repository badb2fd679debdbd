package pipeline_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
)

// windowBenchYAML is the pipeline of BenchmarkProcessWindow: the workload of `processor
// bench`, on event time, through the operators given.
const windowBenchYAML = `
nats: {url: ""}
http: {listen: none}
streams:
  - {name: BENCH, subjects: ["bench.>"]}
  - {name: BENCH_OUT, subjects: ["benchout.>"]}
pipelines:
  - name: bench
    source: {stream: BENCH, start: all, stop: end}
    key: event.key
    time: event.ts
    cache: {max_keys: 100000}
    operators:
`

// BenchmarkProcessWindow compares the per-event work of a window pipeline with that of the
// standard fold (BenchmarkProcess's) on one workload, whose event time advances 1ms an event
// over 1,000 keys: a window of a minute gets about 60 events, and windows close and expire as
// the benchmark runs.
func BenchmarkProcessWindow(b *testing.B) {
	ops := map[string]string{
		"fold": `      - fold:
          projection: bench
          initial: {count: 0, total: 0.0, qty: 0, last: ""}
          on:
            t1: {count: state.count + 1, total: state.total + event.amount}
            t2: {count: state.count + 1, qty: state.qty + event.qty}
            t3: {count: state.count + 1, last: event.ref}
            t4: {count: state.count + 1, total: state.total - event.amount, qty: 'max(state.qty - 1, 0)'}
`,
		"tumbling": windowOp("tumbling: 1m"),
		"hopping":  windowOp("hopping: {size: 5m, advance: 1m}"),
		"session":  windowOp("session: {gap: 5s}"),
	}
	for _, name := range []string{"fold", "tumbling", "hopping", "session"} {
		b.Run(name, func(b *testing.B) { benchWindowPipeline(b, windowBenchYAML+ops[name]) })
	}
}

// windowOp is a window operator of the given kind with three aggregates and an emit.
func windowOp(kind string) string {
	return `      - window:
          projection: bench
          ` + kind + `
          lateness: 5s
          retention: 10m
          aggregate: {n: count(), total: sum(event.amount), most: max(event.qty)}
          emit: {subject: '"benchout." + key', data: {n: window.n, total: window.total}}
`
}

func benchWindowPipeline(b *testing.B, yaml string) {
	path := filepath.Join(b.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	reg := builtin.Registry()
	ps, err := pipeline.Build(cfg, reg)
	if err != nil {
		b.Fatal(err)
	}
	p := pipeline.NewProcessOnly(ps[0])
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1 << 16
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = bench.Payload(i, 1000, 100, 10_000, rng)
	}
	msg := &benchMsg{}
	b.ReportAllocs()
	seq := uint64(0)
	var reply []byte
	for b.Loop() {
		// the workload's payload, with an event time 1ms after the last one's
		ts := base.Add(time.Duration(seq) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		msg.data = bytes.Replace(payloads[seq%n], []byte("2026-01-01T00:00:00.000Z"), []byte(ts), 1)
		seq++
		reply = append(reply[:0], "$JS.ACK._.hash.BENCH.c.1."...)
		reply = strconv.AppendUint(reply, seq, 10)
		reply = append(reply, ".1."...)
		reply = strconv.AppendUint(reply, 1767225600000000000+seq, 10)
		reply = append(reply, ".0.x"...)
		msg.reply = string(reply)
		if err := p.Process(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
}
