package dedupe_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/oracle"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
)

// driver runs one operator over events as the pipeline does (pipeline/process.go): at each
// valid event the watermark moves first and, when it moved, the operator's Advance runs on a
// tick whose effects are applied at once; then Process runs, unless the event does not reach
// the operator, and its effects are applied when it is kept and no later operator drops it.
// Batches are committed to the store, or crash half way through their commit; a restart
// starts the operator again and processes again the events after the checkpoint.
type driver struct {
	t     testing.TB
	op    operators.Operator
	store *memStore
	x     operators.Exec
	wm    time.Time

	batch []output        // the derived events of the batch in hand
	kept  map[uint64]bool // the batch's decisions: kept (true) or dropped as a repeat
	// published are the derived events in the output stream, by id: the first published of
	// an id stays (the stream drops a repeated Nats-Msg-Id).
	published map[string]output
	order     []string          // ids in publication order
	decided   map[uint64]bool   // the decisions of the committed batches
	lastSeq   map[string]uint64 // scratch for check: the last sighting of each id
	cpWM      time.Time         // the checkpoint's watermark
	cp        int               // the checkpoint: events before it are committed
	restarts  int
}

// output is a derived event and the sequence of the event whose step staged it.
type output struct {
	event.Output
	by uint64
}

// input is an oracle event with what the driver needs besides.
type input struct {
	oracle.Event
	// droppedAfter: an operator after this one drops the event (or dead-letters it), which
	// drops the effects it staged.
	droppedAfter bool
}

func newDriver(t testing.TB, op operators.Operator) *driver {
	pr := op.(operators.Projector)
	d := &driver{t: t, op: op, published: map[string]output{}, decided: map[uint64]bool{}, lastSeq: map[string]uint64{}, kept: map[uint64]bool{}}
	d.store = newMemStore(t, map[string]*event.Shape{pr.Projection(): pr.Shape()})
	d.start()
	return d
}

// start starts a run from the checkpoint.
func (d *driver) start() {
	d.store.restart()
	d.wm = d.cpWM
	d.x = operators.Exec{Ctx: context.Background(), Store: d.store, Watermark: d.wm}
	if st, ok := d.op.(operators.Starter); ok {
		if err := st.Start(&d.x); err != nil {
			d.t.Fatalf("start: %v", err)
		}
	}
	clear(d.kept)
	d.batch = d.batch[:0]
}

// step processes one event.
func (d *driver) step(in input) {
	d.t.Helper()
	if !in.Valid {
		return // its time does not decode: it moves nothing and reaches no stateful operator
	}
	if in.Time.After(d.wm) {
		from := d.wm
		d.wm = in.Time
		d.x.Watermark = d.wm
		if c, ok := d.op.(operators.Clock); ok {
			tick := &event.Event{Seq: in.Seq, Time: d.wm, Mode: mode(in.Hydrated), Subject: "ev." + in.Key}
			if err := c.Advance(&d.x, tick, from, d.wm); err != nil {
				d.t.Fatalf("advance to %s at seq %d: %v", d.wm, in.Seq, err)
			}
			d.apply(tick)
		}
	}
	if !in.Reaches {
		return
	}
	ev := &event.Event{Seq: in.Seq, Key: in.Key, Type: in.Type, Time: in.Time, Mode: mode(in.Hydrated), Subject: "ev." + in.Key, Fields: in.Fields}
	keep, err := d.op.Process(&d.x, ev)
	if err != nil {
		d.t.Fatalf("process seq %d: %v", in.Seq, err)
	}
	d.kept[in.Seq] = keep
	if !keep && !ev.Duplicate {
		d.t.Fatalf("seq %d dropped but not as a duplicate", in.Seq)
	}
	if keep && !in.droppedAfter {
		d.apply(ev)
	}
}

func mode(hydrated bool) event.Mode {
	if hydrated {
		return event.Hydrated
	}
	return event.Live
}

func (d *driver) apply(ev *event.Event) {
	for _, w := range ev.Writes {
		d.store.apply(w)
	}
	for _, o := range ev.Outputs {
		if o.ID == "" {
			d.t.Fatalf("derived event %s at seq %d without an id of its own", o.Subject, ev.Seq)
		}
		d.batch = append(d.batch, output{Output: o, by: ev.Seq})
	}
}

// publish publishes the first n derived events of the batch.
func (d *driver) publish(n int) {
	for _, o := range d.batch[:n] {
		if _, dup := d.published[o.ID]; !dup {
			d.published[o.ID] = o
			d.order = append(d.order, o.ID)
		}
	}
}

// run processes events in batches of 1 to maxBatch events; with probability crash, a batch's
// commit crashes half way (the derived events are published first, then the keys; some land)
// and the pipeline restarts from its checkpoint. It ends when every event is committed.
func (d *driver) run(events []input, rng *rand.Rand, maxBatch int, crash float64) {
	d.t.Helper()
	for d.cp < len(events) {
		end := min(d.cp+1+rng.IntN(maxBatch), len(events))
		for _, in := range events[d.cp:end] {
			d.step(in)
		}
		if rng.Float64() < crash {
			d.restarts++
			if rng.IntN(3) == 0 {
				d.publish(rng.IntN(len(d.batch) + 1)) // crashed while publishing
			} else {
				d.publish(len(d.batch))
				d.store.commit(func(string) bool { return rng.IntN(2) == 0 })
			}
			d.start()
			continue
		}
		d.publish(len(d.batch))
		d.store.commit(func(string) bool { return true })
		for seq, k := range d.kept {
			d.decided[seq] = k
		}
		clear(d.kept)
		d.batch = d.batch[:0]
		d.cp, d.cpWM = end, d.wm
	}
}
