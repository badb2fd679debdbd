package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/pipeline/decode"
	"github.com/jetfold/jetfold/pipeline/source"
	"github.com/jetfold/jetfold/pipeline/state"
)

// ProcessOnly runs messages through a pipeline's processing (decode, expressions, operators,
// staging into the cache) without NATS, for benchmarks: its projections start empty, and a
// batch is sealed every 50,000 events as a commit would.
type ProcessOnly struct {
	r *Runner
	b *unit
}

// NewProcessOnly returns a ProcessOnly for p.
func NewProcessOnly(p *Pipeline) *ProcessOnly {
	r := NewRunner(p, Options{})
	r.store = state.New(state.Options{MaxKeys: p.Config.Cache.MaxKeys, Shapes: p.shapes, InPlace: p.inPlace})
	for _, proj := range p.Projections {
		r.store.Track(proj) // empty buckets: misses are new keys, no read
	}
	r.exec = operators.Exec{Ctx: context.Background(), Store: r.store}
	r.dec = decode.New(p.Config.Decode, p.layout, nil)
	return &ProcessOnly{r: r, b: &unit{}}
}

// Process processes one message.
func (p *ProcessOnly) Process(m jetstream.Msg) error {
	md, err := source.MetaOf(m)
	if err := p.r.processMsg(p.b, source.Msg{Msg: m, Meta: md, Err: err}); err != nil {
		return err
	}
	if p.b.N == 50_000 {
		p.r.seal(p.b)
		p.r.store.Committed(p.b.writes)
		p.b.Reset()
	}
	return nil
}

// Operators returns the operators of p, in order.
func Operators(p *Pipeline) []operators.Operator { return p.ops }

// FastRestarts shortens the backoff between restarts for the rest of the test.
func FastRestarts(t *testing.T) {
	first, most := firstBackoff, maxBackoff
	firstBackoff, maxBackoff = 10*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { firstBackoff, maxBackoff = first, most })
}
