package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/pipeline/decode"
)

// Batched reads ahead. A multi-last direct get (nats-server 2.11+) asks a stream for the last
// message of many subjects in one request: the server answers with one message per subject
// that has one, in stream order, then an end-of-batch status (204 EOB) that says how many it
// left out (Nats-Num-Pending: the answer stops at the server's max_pending bytes). A subject
// without a message is simply not in the answer, so only a complete answer (none left out)
// tells that a key is absent. When no subject has a message the server answers 404 No
// Results instead.
//
// orbit.go's jetstreamext.GetLastMsgsFor makes the same request, but its iterator ends
// without an error on a timeout and hides the EOB's count: a key missing from its answer may
// exist. Hence this client of a few lines.
const (
	// multiLastMax is the most keys one request asks for: the server refuses a request whose
	// answer would hold more than 1024 messages (413 Too Many Results).
	multiLastMax = 1000
	// multiLastMin is the fewest keys worth a request of their own when a read ahead is split
	// across requests in flight.
	multiLastMin = 64
	// multiLastInFlight is how many requests of one read ahead are in flight at once.
	multiLastInFlight = 4
	// multiLastTimeout bounds a request whose context has no deadline.
	multiLastTimeout = 10 * time.Second
)

// errMultiLast wraps the status a server answered a multi-last request with.
var errMultiLast = errors.New("multi-last direct get")

// multiLastReq is the request of a multi-last direct get.
type multiLastReq struct {
	MultiLast []string `json:"multi_last"`
}

// directGetSubject returns the subject of the direct gets of stream, with js's API prefix or
// domain.
func directGetSubject(js jetstream.JetStream, stream string) string {
	o := js.Options()
	switch {
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + ".DIRECT.GET." + stream
	case o.Domain != "":
		return "$JS." + o.Domain + ".API.DIRECT.GET." + stream
	}
	return "$JS.API.DIRECT.GET." + stream
}

// canBatch tells whether the keys of proj can be read with multi-last direct gets: its bucket's
// stream allows direct gets and no server refused such a request yet.
func (s *Store) canBatch(proj string) bool {
	st, ok := s.buckets[proj]
	return ok && s.js != nil && !s.noMulti.Load() && st.CachedInfo().Config.AllowDirect
}

// loadMany reads the committed values of es, all keys of projection proj, with one multi-last
// direct get, as [Store.load] reads one: loaded[i] is set for each entry read, present or
// absent. A key the answer leaves out is absent only when the answer is complete. A value
// that is not a JSON object is left unread (Get reports it). It returns an error wrapping
// [errMultiLast] when the server refused the request, cut its answer short or the request
// is too large, and the client's error when the request failed (a timeout, a disconnection);
// the entries read before stay read.
func (s *Store) loadMany(ctx context.Context, proj string, es []*entry, loaded []bool) error {
	st := s.buckets[proj]
	subjs := make([]string, len(es))
	at := make(map[string]int, len(es))
	for i, e := range es {
		subjs[i] = e.subj
		at[e.subj] = i
	}
	req, err := json.Marshal(multiLastReq{MultiLast: subjs})
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, multiLastTimeout)
		defer cancel()
	}
	nc := s.js.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(directGetSubject(s.js, st.CachedInfo().Config.Name), inbox, req); err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			return fmt.Errorf("%w: %v", errMultiLast, err) // long keys: read them one by one
		}
		return err
	}
	shape := s.o.Shapes[proj]
	answered := make([]bool, len(es))
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return err
		}
		subj := msg.Header.Get(jetstream.SubjectHeader)
		if subj == "" {
			// A status: the end of the answer, or a refusal.
			status, desc := msg.Header.Get("Status"), msg.Header.Get("Description")
			switch {
			case status == "204" && msg.Header.Get("Nats-Num-Pending") == "0", status == "404" && desc == "No Results":
				for i, a := range answered {
					if !a {
						loaded[i] = true // absent
					}
				}
				return nil
			case status == "204":
				// The server's max_pending cut the answer: the rest is read one by one.
				return fmt.Errorf("%w: answer cut short", errMultiLast)
			case status == "408":
				// A server before 2.11 sees an empty request.
				s.noMulti.Store(true)
			}
			return fmt.Errorf("%w: %s %s", errMultiLast, status, desc)
		}
		i, ok := at[subj]
		if !ok || answered[i] {
			continue
		}
		answered[i] = true
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: sequence of %s: %v", errMultiLast, subj, err)
		}
		e := es[i]
		meta := ReadMeta(msg.Header)
		if meta.Deleted {
			e.rev, loaded[i] = seq, true
			continue
		}
		m, err := decode.State(msg.Data)
		if err != nil {
			continue // Get reads it again and makes the event a dead letter
		}
		e.rev = seq
		e.State, e.Seq, e.Time, e.Owned, e.Roomy = event.NewRecord(shape, m), meta.Seq, meta.Time, s.o.InPlace, false
		loaded[i] = true
	}
}
