package streams

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrBadLine is returned for a JSONL line that is not a publishable envelope.
var ErrBadLine = errors.New("bad line")

// PublishOptions tunes [PublishJSONL].
type PublishOptions struct {
	// Subject, when set, is the subject of every line, and each line is published as it is
	// (malformed JSON included). When empty, each line must be an envelope
	// {"subject": "...", "data": <any JSON>, "headers": {"k": "v"}} and data is published.
	Subject string
	// MsgIDPrefix, when set, gives each message the id MsgIDPrefix + line number, so that a
	// repeated publish within the stream's duplicate window adds nothing.
	MsgIDPrefix string
	// Window is the number of publishes awaiting their ack at once (default [DefaultWindow]).
	Window int
	// Progress, when set, is called with the number of lines acknowledged so far.
	Progress func(done int)
}

type envelope struct {
	Subject string            `json:"subject"`
	Data    json.RawMessage   `json:"data"`
	Headers map[string]string `json:"headers"`
}

// PublishJSONL publishes every non-empty line of r with asynchronous publishes and returns
// how many were acknowledged.
func PublishJSONL(ctx context.Context, js jetstream.JetStream, r io.Reader, o PublishOptions) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 8*1024*1024)
	w := NewWindow(js, o.Window)
	done, line := 0, 0
	w.OnAck = func(int, *jetstream.PubAck) {
		if done++; o.Progress != nil && done%w.size == 0 {
			o.Progress(done)
		}
	}
	flush := func() error {
		err := w.Flush(ctx)
		if o.Progress != nil {
			o.Progress(done)
		}
		return err
	}
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		m := &nats.Msg{Subject: o.Subject, Data: bytes.Clone(raw)}
		if o.Subject == "" {
			var env envelope
			if err := json.Unmarshal(raw, &env); err != nil || env.Subject == "" {
				_ = flush() // count what went out before the bad line
				return done, fmt.Errorf("line %d: %w: want {\"subject\": ..., \"data\": ...} (or pass --subject)", line, ErrBadLine)
			}
			m.Subject, m.Data = env.Subject, env.Data
			if len(env.Headers) > 0 {
				m.Header = nats.Header{}
				for k, v := range env.Headers {
					m.Header.Set(k, v)
				}
			}
		}
		if o.MsgIDPrefix != "" {
			if m.Header == nil {
				m.Header = nats.Header{}
			}
			m.Header.Set(jetstream.MsgIDHeader, o.MsgIDPrefix+strconv.Itoa(line))
		}
		if err := w.Publish(ctx, m); err != nil {
			return done, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return done, fmt.Errorf("read line %d: %w", line+1, err)
	}
	return done, flush()
}

// CountLines counts the non-empty lines of r (for a progress bar's total).
func CountLines(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 8*1024*1024)
	n := 0
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			n++
		}
	}
	return n, sc.Err()
}
