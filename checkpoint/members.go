package checkpoint

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/streams"
)

// membersPrefix starts the keys of the lease bucket that say which processes run a group
// (see Leases.Announce): "members.<group>.<encoded holder>".
const membersPrefix = "members."

// Announce makes this process a member of group (a partitioned pipeline, say) until stop is
// called: an entry of the lease bucket with the lease TTL, written before Announce returns (so
// that [Leases.Members] counts this process from then on, unless that write failed) and
// renewed every TTL/4 (a renewal that fails is logged and tried again). A process that dies
// drops out of [Leases.Members] within the TTL; stop deletes the entry at once.
func (l *Leases) Announce(group string) (stop func()) {
	key := membersPrefix + group + "." + streams.EncodeKey(l.holder)
	subject := streams.KVSubject(LeaseBucket, key)
	write := func() {
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/4)
		defer cancel()
		_, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: nats.Header{}}, jetstream.WithMsgTTL(l.ttl))
		if err != nil {
			l.log.Warn("announcing this process failed; retrying", "group", group, "err", err)
		}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	write()
	go func() {
		defer close(finished)
		tick := time.NewTicker(l.ttl / 4)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			write()
		}
	}()
	return func() {
		close(done)
		<-finished
		ctx, cancel := context.WithTimeout(context.Background(), max(2*time.Second, l.ttl))
		defer cancel()
		_ = l.kv.Delete(ctx, key)
	}
}

// Members returns the processes announced in group ([Leases.Announce]) whose entry has not
// expired, this one included when it announced itself.
func (l *Leases) Members(ctx context.Context, group string) ([]string, error) {
	prefix := membersPrefix + group + "."
	list, err := l.kv.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", group, err)
	}
	var out []string
	for k := range list.Keys() {
		h, err := streams.DecodeKey(strings.TrimPrefix(k, prefix))
		if err != nil {
			continue
		}
		out = append(out, h)
	}
	return out, nil
}
