package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
)

// layoutCase is one configuration of BenchmarkPartitionLayout.
type layoutCase struct {
	name       string
	partitions int
	replicas   int  // connections, each running its share of the partitions (i mod replicas)
	bySubject  bool // source.partitioned_by_subject on a stream partitioned in as many
	raw        bool // the raw consume rate of the stream, no pipeline
}

// BenchmarkPartitionLayout measures stream positions per second of the standard fold over
// JETFOLD_PARTITION_EVENTS events (default 200,000, 10,000 keys), from an empty checkpoint to
// the end of the stream, with 1, 2 and 4 partitions on 1 and 2 replicas: each partition
// reading only its subjects (source.partitioned_by_subject on a stream whose subject transform
// puts the partition first), and, to compare, 4 partitions reading the whole stream. A replica
// is a connection of its own running partitions i with i mod replicas equal to its number,
// in this process (the partitions are split statically, without leases: what is measured is
// reading and folding). Each iteration is one round of every case, in alternating order, with
// the raw consume rate of the same stream (nats.go ordered consumer, AckNone) measured in it;
// the medians over rounds are reported. Run it with -benchtime=5x for 5 rounds.
func BenchmarkPartitionLayout(b *testing.B) {
	const keys = 10_000
	srv := natstest.Server(b)
	_, js := natstest.Connect(b, srv)
	dir := b.TempDir()
	var st strings.Builder
	st.WriteString("nats: {url: \"\"}\nhttp: {listen: none}\nstreams:\n  - {name: BENCH_OUT, subjects: [\"benchout.>\"]}\n")
	for _, n := range []int{1, 2, 4} {
		fmt.Fprintf(&st, "  - {name: B%d, subjects: [\"b%d.*\"]", n, n)
		if n > 1 {
			fmt.Fprintf(&st, ", subject_transform: {src: \"b%d.*\", dest: \"{{partition(%d,1)}}.b%d.{{wildcard(1)}}\"}", n, n, n)
		}
		st.WriteString("}\n")
	}
	streamsYAML := st.String()
	pipetest.Build(b, js, filepath.Join(dir, "streams.yaml"), streamsYAML+"pipelines: []\n", nil)
	var events int
	for _, n := range []int{1, 2, 4} {
		events = pipetest.PublishWorkload(b, js, "PARTITION_EVENTS", 200_000, keys, func(p []byte) string {
			_, rest, _ := strings.Cut(string(p), `"key":"`)
			key, _, _ := strings.Cut(rest, `"`)
			return "b" + strconv.Itoa(n) + "." + key
		})
	}
	cases := []layoutCase{
		{name: "raw", raw: true},
		{name: "p1-r1", partitions: 1, replicas: 1},
		{name: "p2-r1", partitions: 2, replicas: 1, bySubject: true},
		{name: "p4-r1", partitions: 4, replicas: 1, bySubject: true},
		{name: "p2-r2", partitions: 2, replicas: 2, bySubject: true},
		{name: "p4-r2", partitions: 4, replicas: 2, bySubject: true},
		{name: "p4-r1-readall", partitions: 4, replicas: 1},
	}
	rates := map[string][]float64{}
	runs, round := 0, 0
	for b.Loop() {
		order := slices.Clone(cases)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		round++
		for _, c := range order {
			runs++
			var rate float64
			if c.raw {
				rate = rawRate(b, js, "B1", events)
			} else {
				rate = layoutRun(b, srv, dir, streamsYAML, c, runs, events)
			}
			rates[c.name] = append(rates[c.name], rate)
			b.Logf("round %d %s: %.0f positions/s", round, c.name, rate)
		}
	}
	raw := median(rates["raw"])
	for _, c := range cases {
		m := median(rates[c.name])
		b.ReportMetric(m, c.name+"-pos/s")
		if !c.raw {
			b.Logf("%s: median %.0f positions/s, %.2f of raw (%.0f); rounds %v", c.name, m, m/raw, raw, rounded(rates[c.name]))
		}
	}
}

// layoutRun runs a new pipeline of case c to the end of its stream and returns the stream
// positions per second.
func layoutRun(b *testing.B, srv *server.Server, dir, streamsYAML string, c layoutCase, run, events int) float64 {
	b.Helper()
	name := fmt.Sprintf("l%d", run)
	stream := "B" + strconv.Itoa(c.partitions)
	source := "stream: " + stream
	if c.bySubject {
		source += ", partitioned_by_subject: true"
	} else if c.partitions > 1 {
		source = "stream: B1" // the whole stream, each partition passing over the others' events
	}
	yaml := streamsYAML + fmt.Sprintf(`pipelines:
  - name: %s
    source: {%s, start: all, stop: end}
    key: event.key
    partitions: %d
    cache: {max_keys: %d}
    operators:
%s`, name, source, c.partitions, 10_000, bench.FoldYAML(name))
	conns := make([]jetstream.JetStream, c.replicas)
	for i := range conns {
		_, conns[i] = natstest.Connect(b, srv)
	}
	ps := pipetest.Build(b, conns[0], filepath.Join(dir, name+".yaml"), yaml, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	began := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, c.partitions)
	for _, part := range pipeline.Partitions(ps[0]) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			js := conns[part.Index%c.replicas]
			errs[part.Index] = pipeline.NewRunner(ps[0], pipeline.Options{JS: js, Partition: part}).Run(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return float64(events) / time.Since(began).Seconds()
}

// rawRate consumes the whole of stream with nats.go's ordered consumer (AckNone, 10,000
// messages a pull) and returns messages per second.
func rawRate(b *testing.B, js jetstream.JetStream, stream string, events int) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	began := time.Now()
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	n := 0
	cc, err := cons.Consume(func(jetstream.Msg) {
		if n++; n == events {
			close(done)
		}
	}, jetstream.PullMaxMessages(10_000))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("raw consume: %d of %d messages: %v", n, events, ctx.Err())
	}
	return float64(events) / time.Since(began).Seconds()
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rounded returns xs rounded to thousands, for a log line.
func rounded(xs []float64) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.FormatFloat(x/1000, 'f', 0, 64) + "k"
	}
	return out
}
