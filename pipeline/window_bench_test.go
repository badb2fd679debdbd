package pipeline_test

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jetfold/jetfold/bench"
)

// BenchmarkProcessWindow compares the per-event work of a window pipeline with that of the
// standard fold (BenchmarkProcess's) on one workload, whose event time advances 1ms an event
// over 1,000 keys: a window of a minute gets about 60 events, and windows close and expire as
// the benchmark runs.
func BenchmarkProcessWindow(b *testing.B) {
	ops := map[string]string{
		"fold":     bench.FoldYAML("bench"),
		"tumbling": windowOp("tumbling: 1m"),
		"hopping":  windowOp("hopping: {size: 5m, advance: 1m}"),
		"session":  windowOp("session: {gap: 5s}"),
		"timeout": `      - timeout:
          name: quiet
          start: [t1]
          cancel: [t4]
          after: 30s
          emit: {subject: '"benchout.t." + key', data: {key: key, deadline: timer.deadline}}
`,
	}
	for _, name := range []string{"fold", "tumbling", "hopping", "session", "timeout"} {
		// the workload of `processor bench`, on event time, through the operators given
		y := bench.ConfigYAML(bench.Pipeline{
			Name: "bench", Stop: "end", Time: "event.ts", CacheKeys: 100_000, Operators: ops[name],
		})
		b.Run(name, func(b *testing.B) { benchWindowPipeline(b, y) })
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
	p := processOnly(b, yaml)
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 1 << 16
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = bench.Payload(i, 1000, 100, 10_000, rng)
	}
	msg := &benchMsg{}
	tsField := []byte(`"ts":"`)
	benchProcess(b, p, func(seq uint64) *benchMsg {
		// the workload's payload, with an event time 1ms after the last one's (the same width
		// as the payload's own)
		src := payloads[seq%n]
		at := bytes.Index(src, tsField) + len(tsField)
		ts := base.Add(time.Duration(seq) * time.Millisecond).Format("2006-01-02T15:04:05.000000Z")
		msg.data = append(append(append(msg.data[:0], src[:at]...), ts...), src[at+len(ts):]...)
		return msg
	})
}
