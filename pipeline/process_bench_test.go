package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators"
)

// benchMsg is a source message without a server, for measuring processing alone.
type benchMsg struct {
	data []byte
	md   jetstream.MsgMetadata
}

func (m *benchMsg) Metadata() (*jetstream.MsgMetadata, error) { md := m.md; return &md, nil }
func (m *benchMsg) Data() []byte                              { return m.data }
func (m *benchMsg) Headers() nats.Header                      { return nil }
func (m *benchMsg) Subject() string                           { return "bench.ev" }
func (m *benchMsg) Reply() string                             { return "" }
func (m *benchMsg) Ack() error                                { return nil }
func (m *benchMsg) DoubleAck(context.Context) error           { return nil }
func (m *benchMsg) Nak() error                                { return nil }
func (m *benchMsg) NakWithDelay(time.Duration) error          { return nil }
func (m *benchMsg) InProgress() error                         { return nil }
func (m *benchMsg) Term() error                               { return nil }
func (m *benchMsg) TermWithReason(string) error               { return nil }

// BenchmarkProcess measures the per-event work of the standard bench pipeline (decode, type,
// key, fold, emit, staging into the cache) without NATS: the part of the hot path that is
// jetfold's own, as a steady ns/event on a noisy machine.
func BenchmarkProcess(b *testing.B) {
	y := `
nats: {url: ""}
streams: [{name: BENCH, subjects: ["bench.>"]}]
pipelines:
  - name: bench
    source: {stream: BENCH}
    key: event.key
    operators:
      - fold:
          projection: bench
          initial: {count: 0, total: 0.0, qty: 0, last: ""}
          on:
            t1: {count: state.count + 1, total: state.total + event.amount}
            t2: {count: state.count + 1, qty: state.qty + event.qty}
            t3: {count: state.count + 1, last: event.ref}
            t4: {count: state.count + 1, total: state.total - event.amount, qty: 'max(state.qty - 1, 0)'}
      - emit: {when: event.flag, subject: '"benchout." + key', data: {key: key, count: state.count}}
`
	path := filepath.Join(b.TempDir(), "p.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load(path, config.LoadOptions{Environ: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	ps, err := Build(cfg, operators.Builtin())
	if err != nil {
		b.Fatal(err)
	}
	r := NewRunner(ps[0], Options{})
	r.cache = newCache(100_000)
	r.cache.track("bench") // an empty bucket: misses are new keys, no NATS needed
	r.exec = operators.Exec{Ctx: context.Background(), Store: r, Pipeline: "bench"}
	r.dec = newDecoder("json", r.p.fields, r.p.allFields)

	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]*benchMsg, 10_000)
	for i := range msgs {
		amt := float64(rng.IntN(100000)) / 100
		data := fmt.Sprintf(`{"type":"t%d","key":"k%d","amount":%.2f,"qty":%d,"flag":%t,"ref":"r-%d","ts":"2026-01-01T00:00:00.000Z","note":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`,
			1+i%4, rng.IntN(10_000), amt, 1+rng.IntN(9), i%100 == 99, i)
		msgs[i] = &benchMsg{data: []byte(data)}
	}
	batch := &batch{}
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		m := msgs[seq%uint64(len(msgs))]
		seq++
		m.md.Sequence.Stream, m.md.Timestamp = seq, time.Unix(0, int64(seq))
		if err := r.processMsg(batch, m); err != nil {
			b.Fatal(err)
		}
		if batch.n == 50_000 { // as a commit would: seal, and let the cache shrink
			r.seal(batch)
			r.cache.committed(batch.writes)
			batch.reset()
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "events/s")
}
