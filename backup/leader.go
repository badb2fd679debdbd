package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reads from the leader. On a replicated stream, any replica answers a direct get (the
// jetstream package's GetLastMsgForSubject when the stream allows direct gets, as KV buckets
// do), and a follower can be behind the leader; a consumer too can be placed on a follower. A
// key read from a follower after its pipeline's checkpoint was read could then be older than
// that checkpoint, which the consistency argument (see the package documentation) does not
// allow. So Write asks the streams' leaders, through the JetStream API requests they alone
// answer: a message get (STREAM.MSG.GET) and a stream info with subjects (STREAM.INFO). The
// one exception is a stream of one replica that no mirror answers for, whose values it reads
// with batch direct gets (see readKeys): its one server is its leader.

// requestTimeout bounds one API request when the context has no deadline.
const requestTimeout = 30 * time.Second

// subjectsPage is how many subjects the server lists in one stream info (JSMaxSubjectDetails),
// and pageOverlap how many of them the next page asks for again (see leader.subjects).
const (
	subjectsPage = 100_000
	pageOverlap  = 1000
)

// leader sends JetStream API requests that the streams' leaders answer.
type leader struct {
	nc     *nats.Conn
	prefix string
}

func newLeader(js jetstream.JetStream) leader {
	o := js.Options()
	prefix := "$JS.API."
	switch {
	case o.APIPrefix != "":
		prefix = strings.TrimSuffix(o.APIPrefix, ".") + "."
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	}
	return leader{nc: js.Conn(), prefix: prefix}
}

// apiResponse is the error part of every API response.
type apiResponse struct {
	Error *jetstream.APIError `json:"error,omitempty"`
}

// request sends req to the API subject and decodes the answer into resp, which embeds
// apiResponse; the API's error is returned as a *jetstream.APIError.
func (l leader) request(ctx context.Context, subject string, req any, resp interface{ apiError() *jetstream.APIError }) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}
	m, err := l.nc.RequestWithContext(ctx, l.prefix+subject, b)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, resp); err != nil {
		return fmt.Errorf("answer of %s: %w", subject, err)
	}
	if e := resp.apiError(); e != nil {
		return e
	}
	return nil
}

func (r *apiResponse) apiError() *jetstream.APIError { return r.Error }

// msgGetResponse is the answer to STREAM.MSG.GET.
type msgGetResponse struct {
	apiResponse
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// errCodeNoMessage is the JetStream error code of a message get that found none.
const errCodeNoMessage = 10037

// lastMsg returns the last message of subject in stream, or jetstream.ErrMsgNotFound.
func (l leader) lastMsg(ctx context.Context, stream, subject string) (*jetstream.RawStreamMsg, error) {
	var resp msgGetResponse
	err := l.request(ctx, "STREAM.MSG.GET."+stream, map[string]string{"last_by_subj": subject}, &resp)
	var api *jetstream.APIError
	if errors.As(err, &api) && api.ErrorCode == errCodeNoMessage {
		return nil, jetstream.ErrMsgNotFound
	}
	if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamNotFound {
		return nil, jetstream.ErrStreamNotFound
	}
	if err != nil {
		return nil, err
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("get %s: an answer without a message", subject)
	}
	m := &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Sequence, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, fmt.Errorf("get %s: headers: %w", subject, err)
		}
	}
	return m, nil
}

// infoResponse is the answer to STREAM.INFO with subjects.
type infoResponse struct {
	apiResponse
	Total int `json:"total"`
	State struct {
		Subjects map[string]uint64 `json:"subjects"`
	} `json:"state"`
}

// subjects returns, sorted, the subjects of stream that match filter and hold a message, as
// its leader lists them. Up to subjectsPage subjects come in one answer, a snapshot. More
// come in pages of sorted subjects, each asking again for the last pageOverlap of the page
// before: should subjects before them vanish between two requests (shifting the next page),
// the last subject of a page must still be in the next, else the listing starts over (at
// most tries times).
func (l leader) subjects(ctx context.Context, stream, filter string) ([]string, error) {
	const tries = 3
	for range tries {
		var out []string
		seen := map[string]struct{}{}
		offset, last, shifted := 0, "", false
		for {
			var resp infoResponse
			req := map[string]any{"subjects_filter": filter, "offset": offset}
			err := l.request(ctx, "STREAM.INFO."+stream, req, &resp)
			var api *jetstream.APIError
			if errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamNotFound {
				return nil, jetstream.ErrStreamNotFound
			}
			if err != nil {
				return nil, fmt.Errorf("subjects of %s: %w", stream, err)
			}
			page := resp.State.Subjects
			if _, ok := page[last]; last != "" && !ok {
				shifted = true
				break
			}
			for s := range page {
				if _, dup := seen[s]; !dup {
					seen[s] = struct{}{}
					out = append(out, s)
				}
			}
			if offset+len(page) >= resp.Total || len(page) < subjectsPage {
				break
			}
			last = ""
			for s := range page {
				last = max(last, s)
			}
			offset += len(page) - pageOverlap
		}
		if !shifted {
			slices.Sort(out)
			return out, nil
		}
	}
	return nil, fmt.Errorf("subjects of %s: %w: the subjects kept changing between pages", stream, ErrChanged)
}
