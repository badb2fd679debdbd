package batch

import (
	"context"
	"errors"
	"time"

	"github.com/jetfold/jetfold/pipeline/source"
)

// Batch is what the loop knows of a batch. A stage's batch type embeds it and adds what the
// batch's messages produce (see [Ptr]); the stage keeps N, Outputs, Pending and Stop, the loop
// Began and Ticked.
type Batch struct {
	// N is the number of messages taken into the batch (a message the stage skips, such as a
	// redelivery, is not taken).
	N int
	// Outputs is the number of outputs the stage staged in the batch: it is full at the
	// follow bounds' size of them.
	Outputs int
	// Pending is how many messages the source had left after the batch's last one: at least
	// the follow bounds' size, the pipeline is catching up.
	Pending uint64
	// Stop, when set, ends the batch before the message that set it: the stage returns it
	// from [Stage.Committed] to end the run once the batch is committed.
	Stop error
	// Began is when the batch took its first message.
	Began time.Time
	// Ticked tells that [Stage.Quiet] staged effects: the batch is committed even without
	// messages.
	Ticked bool
}

// due tells whether the batch holds anything to commit.
func (b *Batch) due() bool { return b.N > 0 || b.Stop != nil || b.Ticked }

// base returns b: through it the loop finds the Batch of a stage's batch.
func (b *Batch) base() *Batch { return b }

// Ptr constrains the batches of a stage: P is *B for a struct B that embeds a [Batch], and
// whose Reset empties the whole of it (the Batch included) for the next batch.
type Ptr[B any] interface {
	*B
	base() *Batch
	Reset()
}

// Job is a commit running on its own goroutine, started by [Stage.Commit].
type Job[P any] struct {
	// Batch is the batch committed.
	Batch P
	// Done is closed when the commit has ended.
	Done chan struct{}
	// Err is the commit's error, set before Done is closed.
	Err error
}

// BurstLen is how many waiting messages are processed in a row before the loop looks at its
// timers and the commit in flight again.
const BurstLen = 256

// ErrCaughtUp is returned by [Loop.Run] once the end of the stream is committed (see
// [Stage.Committed]).
var ErrCaughtUp = errors.New("caught up")

// Feed is where the loop takes messages from: the pipeline's source.
type Feed interface {
	// Next returns the next message at hand, false when there is none: then wait on Ready.
	Next() (source.Msg, bool)
	// AtHand returns up to n of the next messages without taking them.
	AtHand(n int) []source.Msg
	// Ready has a token when messages are at hand after none were.
	Ready() <-chan struct{}
	// Empty tells whether no message is at hand.
	Empty() bool
	// Errs delivers the error that ends the run.
	Errs() <-chan error
}

// Stage is what the loop does with messages and batches: the runner. P is its batch type
// (see [Ptr]).
type Stage[P any] interface {
	// Process adds the effects of m to b.
	Process(b P, m source.Msg) error
	// Over tells whether the state cache is over its bound with keys no commit has written:
	// the batch must be committed before it takes more.
	Over() bool
	// BeginBurst and EndBurst frame a burst of at most max messages taken from f. BeginBurst
	// returns how many of them it read ahead for (those at hand; 0: it did not read ahead):
	// the burst takes no more, and the next one reads ahead of those that arrived meanwhile.
	// took is how many the burst took (none: the feed had nothing at hand).
	BeginBurst(f Feed, max int) (covered int)
	EndBurst(took int)
	// Commit seals b and starts its commit.
	Commit(ctx context.Context, b P) *Job[P]
	// Committed is called when j's commit has ended. It returns the error that ends the
	// run (the commit's, or an event's under on_error: stop), and whether the pipeline
	// reached the end of its stream (stop: end).
	Committed(j *Job[P]) (end bool, err error)
	// Quiet is called while the feed has been idle for the loop's idle time (and then every
	// second or idle time, the shorter): it may stage effects on b, and tells whether it
	// did.
	Quiet(b P) (bool, error)
}
