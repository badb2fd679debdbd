package opstest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// Driver runs one operator over events as the pipeline does (pipeline/process.go): at each
// valid event the watermark moves first and, when it moved, the operator's Advance runs on a
// tick whose effects are applied at once; then Process runs, unless the event does not reach
// the operator, and its effects are applied when it is kept and no later operator drops it.
// Batches are committed to the store, or crash half way through their commit; a restart
// starts the operator again and processes again the events after the checkpoint.
type Driver struct {
	t     testing.TB
	Op    operators.Operator
	Store *Store
	X     operators.Exec
	WM    time.Time // the watermark

	Batch []Output        // the derived events of the batch in hand
	kept  map[uint64]bool // the batch's decisions: kept (true) or dropped as a repeat
	// Published are the derived events in the output stream, by id: the first published of
	// an id stays (the stream drops a repeated Nats-Msg-Id).
	Published    map[string]Output
	Order        []string        // ids in publication order
	Decided      map[uint64]bool // the decisions of the committed batches
	CheckpointWM time.Time       // the checkpoint's watermark
	cp           int             // the checkpoint: events before it are committed
	Restarts     int
}

// Output is a derived event and the sequence of the event whose step staged it.
type Output struct {
	event.Output
	By uint64
}

// Input is an oracle event with what the driver needs besides.
type Input struct {
	oracle.Event
	// DroppedAfter: an operator after this one drops the event (or dead-letters it), which
	// drops the effects it staged.
	DroppedAfter bool
}

// OracleEvents returns the events as the oracle sees them: an event whose effects a later
// operator drops did not reach the operator.
func OracleEvents(in []Input) []oracle.Event {
	out := make([]oracle.Event, len(in))
	for i, e := range in {
		out[i] = e.Event
		out[i].Reaches = e.Reaches && !e.DroppedAfter
	}
	return out
}

// NewDriver returns a driver of op, an operators.Projector, over an empty store, started.
func NewDriver(t testing.TB, op operators.Operator) *Driver {
	pr := op.(operators.Projector)
	d := &Driver{t: t, Op: op, Published: map[string]Output{}, Decided: map[uint64]bool{}, kept: map[uint64]bool{}}
	d.Store = NewStore(t, map[string]*event.Shape{pr.Projection(): pr.Shape()})
	d.Start()
	return d
}

// Start starts a run from the checkpoint.
func (d *Driver) Start() {
	d.Store.Restart()
	d.WM = d.CheckpointWM
	d.X = operators.Exec{Ctx: context.Background(), Store: d.Store, Watermark: d.WM}
	if st, ok := d.Op.(operators.Starter); ok {
		if err := st.Start(&d.X); err != nil {
			d.t.Fatalf("start: %v", err)
		}
	}
	clear(d.kept)
	d.Batch = d.Batch[:0]
}

// Step processes one event.
func (d *Driver) Step(in Input) {
	d.t.Helper()
	if !in.Valid {
		return // its time does not decode: it moves nothing and reaches no stateful operator
	}
	if in.Time.After(d.WM) {
		from := d.WM
		d.WM = in.Time
		d.X.Watermark = d.WM
		if c, ok := d.Op.(operators.Clock); ok {
			tick := &event.Event{Seq: in.Seq, Time: d.WM, Mode: mode(in.Hydrated), Subject: "ev." + in.Key}
			if err := c.Advance(&d.X, tick, from, d.WM); err != nil {
				d.t.Fatalf("advance to %s at seq %d: %v", d.WM, in.Seq, err)
			}
			d.Apply(tick)
		}
	}
	if !in.Reaches {
		return
	}
	ev := &event.Event{Seq: in.Seq, Key: in.Key, Type: in.Type, Time: in.Time, Mode: mode(in.Hydrated), Subject: "ev." + in.Key, Fields: in.Fields}
	keep, err := d.Op.Process(&d.X, ev)
	if err != nil {
		d.t.Fatalf("process seq %d: %v", in.Seq, err)
	}
	d.kept[in.Seq] = keep
	if !keep && !ev.Duplicate {
		d.t.Fatalf("seq %d dropped but not as a duplicate", in.Seq)
	}
	if keep && !in.DroppedAfter {
		d.Apply(ev)
	}
}

func mode(hydrated bool) event.Mode {
	if hydrated {
		return event.Hydrated
	}
	return event.Live
}

// Apply applies the effects ev staged: its writes to the store, its derived events to the
// batch.
func (d *Driver) Apply(ev *event.Event) {
	for _, w := range ev.Writes {
		d.Store.Apply(w)
	}
	for _, o := range ev.Outputs {
		if o.ID == "" {
			d.t.Fatalf("derived event %s at seq %d without an id of its own", o.Subject, ev.Seq)
		}
		d.Batch = append(d.Batch, Output{Output: o, By: ev.Seq})
	}
}

// Publish publishes the first n derived events of the batch.
func (d *Driver) Publish(n int) {
	for _, o := range d.Batch[:n] {
		if _, dup := d.Published[o.ID]; !dup {
			d.Published[o.ID] = o
			d.Order = append(d.Order, o.ID)
		}
	}
}

// Run processes events in batches of 1 to maxBatch events; with probability crash, a batch's
// commit crashes half way (the derived events are published first, then the keys; some land)
// and the pipeline restarts from its checkpoint. It ends when every event is committed.
func (d *Driver) Run(events []Input, rng *rand.Rand, maxBatch int, crash float64) {
	d.t.Helper()
	for d.cp < len(events) {
		end := min(d.cp+1+rng.IntN(maxBatch), len(events))
		for _, in := range events[d.cp:end] {
			d.Step(in)
		}
		if rng.Float64() < crash {
			d.Restarts++
			if rng.IntN(3) == 0 {
				d.Publish(rng.IntN(len(d.Batch) + 1)) // crashed while publishing
			} else {
				d.Publish(len(d.Batch))
				d.Store.Commit(func(string) bool { return rng.IntN(2) == 0 })
			}
			d.Start()
			continue
		}
		d.Publish(len(d.Batch))
		d.Store.Commit(func(string) bool { return true })
		for seq, k := range d.kept {
			d.Decided[seq] = k
		}
		clear(d.kept)
		d.Batch = d.Batch[:0]
		d.cp, d.CheckpointWM = end, d.WM
	}
}
