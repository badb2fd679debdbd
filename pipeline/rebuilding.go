package pipeline

import (
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
	"github.com/jetfold/jetfold/pipeline/decode"
)

// Definitions returns the definitions of the projections p writes, as the checkpoint keeps
// them (checkpoint.Checkpoint.Definitions).
func (p *Pipeline) Definitions() map[string]string { return p.defs }

// DefinitionChanges describes, one line per projection, how the definitions cur differ from
// old (nil: the same, or old kept none).
func DefinitionChanges(old, cur map[string]string) []string {
	var out []string
	for _, c := range changedDefinitions(old, cur) {
		out = append(out, c.projection+": "+c.what)
	}
	return out
}

// ForRebuild returns a copy of p as a rebuild runs it: from start, up to the end of the
// stream (or Options.StopAt), its watermark moved by events only, never by the wall clock.
// The copy shares p's operators, which hold state of their own while they run: give a rebuild
// a Pipeline built for it, not one a runner of the process uses.
func (p *Pipeline) ForRebuild(start config.StartPos) *Pipeline {
	q := *p
	q.Start = start
	q.Config.Source.Stop = "end"
	q.Config.Idle = 0
	return &q
}

// Owners tells which partition of a partitioned pipeline a source message belongs to, as the
// pipeline's partition runners decide it (see [Partition]): a rebuild's switch tells by it
// which of the messages a partition's crashed run published are that partition's. One Owners
// serves one goroutine.
type Owners struct {
	p   *Pipeline
	dec *decode.Decoder
	x   expr.Runner
	ev  event.Event
}

// Owners returns the Owners of p's partitions.
func (p *Pipeline) Owners() *Owners {
	return &Owners{p: p, dec: decode.New(p.Config.Decode, p.layout, nil)}
}

// Of returns the partition (0 to partitions-1) of the source message m: with
// source.partitioned_by_subject the one its subject's first token names; otherwise that of its
// key, or of its sequence when the key cannot be computed (see Runner.processOne).
func (o *Owners) Of(m *jetstream.RawStreamMsg) int {
	n := o.p.Config.Partitions
	if n <= 1 {
		return 0
	}
	if o.p.Config.Source.PartitionedBySubject {
		first, _, _ := strings.Cut(m.Subject, ".")
		i, err := strconv.Atoi(first)
		if err != nil || i < 0 || i >= n {
			return -1 // no partition reads it
		}
		return i
	}
	ev := &o.ev
	ev.Reset()
	ev.Seq, ev.Subject, ev.Time, ev.Data, ev.Header = m.Sequence, m.Subject, m.Time, m.Data, map[string][]string(m.Header)
	if err := o.dec.Decode(ev, ev.Data, ev.Header); err != nil {
		return eventPartition("", err, m.Sequence, n)
	}
	if t, err := o.x.EvalString(o.p.typeExpr, ev); err == nil {
		ev.Type = t
	}
	key, err := o.x.EvalString(o.p.keyExpr, ev)
	return eventPartition(key, err, m.Sequence, n)
}
