package pipeline_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/bench"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators/builtin"
	"github.com/jetfold/jetfold/pipeline"
)

// benchMsg is a source message without a server, for measuring processing alone. Its
// metadata is in its acknowledgement subject, as the server sends it.
type benchMsg struct {
	data  []byte
	reply string
}

func (m *benchMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return nil, errors.New("benchMsg: the metadata is in the reply subject")
}
func (m *benchMsg) Data() []byte                     { return m.data }
func (m *benchMsg) Headers() nats.Header             { return nil }
func (m *benchMsg) Subject() string                  { return "bench.ev" }
func (m *benchMsg) Reply() string                    { return m.reply }
func (m *benchMsg) Ack() error                       { return nil }
func (m *benchMsg) DoubleAck(context.Context) error  { return nil }
func (m *benchMsg) Nak() error                       { return nil }
func (m *benchMsg) NakWithDelay(time.Duration) error { return nil }
func (m *benchMsg) InProgress() error                { return nil }
func (m *benchMsg) Term() error                      { return nil }
func (m *benchMsg) TermWithReason(string) error      { return nil }

// BenchmarkProcess measures the per-event work of the pipeline of `processor bench` (decode,
// type, key, fold, emit, staging into the cache) on its workload, without NATS: the part of
// the hot path that is jetfold's own, as a steady ns/event on a noisy machine.
func BenchmarkProcess(b *testing.B) {
	p := processOnly(b, bench.PipelineYAML("follow", config.Batch{}, 100_000))
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]*benchMsg, 10_000)
	for i := range msgs {
		msgs[i] = &benchMsg{data: bench.Payload(i, 10_000, 100, 10_000, rng)}
	}
	benchProcess(b, p, func(seq uint64) *benchMsg { return msgs[seq%uint64(len(msgs))] })
}

// processOnly builds the first pipeline of the configuration yaml (its operators the
// builtin ones) to process messages without NATS.
func processOnly(b *testing.B, yaml string) *pipeline.ProcessOnly {
	path := filepath.Join(b.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	ps, err := pipeline.Build(cfg, builtin.Registry())
	if err != nil {
		b.Fatal(err)
	}
	return pipeline.NewProcessOnly(ps[0])
}

// benchProcess processes msg(seq) at each iteration, seq counting from 0, with the
// acknowledgement subject of the stream sequence seq+1, and reports events/s.
func benchProcess(b *testing.B, p *pipeline.ProcessOnly, msg func(seq uint64) *benchMsg) {
	b.ReportAllocs()
	seq := uint64(0)
	var reply []byte
	for b.Loop() {
		m := msg(seq)
		seq++
		// what the client library receives: the subject of a v2 server (one allocation)
		reply = append(reply[:0], "$JS.ACK._.hash.BENCH.c.1."...)
		reply = strconv.AppendUint(reply, seq, 10)
		reply = append(reply, ".1."...)
		reply = strconv.AppendUint(reply, 1767225600000000000+seq, 10)
		reply = append(reply, ".0.x"...)
		m.reply = string(reply)
		if err := p.Process(m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
}
