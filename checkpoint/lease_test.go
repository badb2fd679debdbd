package checkpoint_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestDeadLocal(t *testing.T) {
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	// A process that exited and was not reaped yet (a zombie) is gone too.
	unreaped := exec.Command("true")
	if err := unreaped.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unreaped.Wait() }() // reaped at the end only
	natstest.Eventually(t, 5*time.Second, "the child to exit", func() bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(unreaped.Process.Pid) + "/stat")
		return strings.Contains(string(b), ") Z")
	})
	dead := checkpoint.DeadLocal("host")
	self := checkpoint.LocalHolder("host")
	prefix := strings.TrimSuffix(self, strconv.Itoa(os.Getpid()))
	tests := []struct {
		holder string
		want   bool
	}{
		{prefix + strconv.Itoa(gone.Process.Pid), true},
		{prefix + strconv.Itoa(unreaped.Process.Pid), true},
		{self, false},         // this very process
		{prefix + "1", false}, // init runs
		{"other" + strings.TrimPrefix(prefix, "host") + strconv.Itoa(gone.Process.Pid), false},
		{"host-1234-" + strconv.Itoa(gone.Process.Pid), false}, // another PID namespace
		{"crash-child", false},
		{prefix + "abc", false},
	}
	for _, tt := range tests {
		if got := dead(tt.holder); got != tt.want {
			t.Errorf("DeadLocal(host)(%q) = %v, want %v", tt.holder, got, tt.want)
		}
	}
	if !strings.HasPrefix(self, "host-") || !strings.HasSuffix(self, "-"+strconv.Itoa(os.Getpid())) {
		t.Errorf("LocalHolder = %q", self)
	}
}

// TestLeaseLostReply: a renewal stored by the server whose reply was lost (a timeout) leaves
// the entry at a revision the holder did not see; its next renewal conflicts. The holder
// finds its own entry there and goes on, rather than taking it for another process's. A
// request to yield, written the same way, makes it hand over (ErrYielded).
func TestLeaseLostReply(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	open := func(holder string) *checkpoint.Leases {
		l, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{TTL: 3 * time.Second, Holder: holder})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a := open("a")
	held, release, err := a.Acquire(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	kv, err := js.KeyValue(ctx, checkpoint.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	// What the lost renewal stored: a's own value, at a revision a never saw.
	e, err := kv.Get(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "$KV." + checkpoint.LeaseBucket + ".p", Data: e.Value(), Header: nats.Header{}},
		jetstream.WithExpectLastSequencePerSubject(e.Revision()), jetstream.WithMsgTTL(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	// An absence can only be watched for a while: a TTL, four renewals (a 3 s TTL, so that
	// a busy machine's late renewals do not make a give it up by itself).
	select {
	case <-held.Done():
		t.Fatalf("a gave its lease up after a lost reply: %v", context.Cause(held))
	case <-time.After(3 * time.Second):
	}
	// A request to yield can race a renewal (then it writes nothing): ask until answered.
	b := open("b")
	natstest.Eventually(t, 10*time.Second, "a to hand over", func() bool {
		if err := b.Yield(ctx, "p"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-held.Done():
			return true
		case <-time.After(300 * time.Millisecond):
			return false
		}
	})
	if !errors.Is(context.Cause(held), checkpoint.ErrYielded) {
		t.Fatalf("a stopped with %v, want ErrYielded", context.Cause(held))
	}
}
