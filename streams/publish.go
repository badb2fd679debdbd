package streams

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrBadLine is returned for a JSONL line that is not a publishable envelope.
	ErrBadLine = errors.New("bad line")
	// ErrUncaptured is returned for a subject no stream captures: JetStream would not store it.
	ErrUncaptured = errors.New("no stream captures the subject")
)

// PublishOptions tunes [CheckJSONL] and [PublishJSONL].
type PublishOptions struct {
	// Subject, when set, is the subject of every line, and each line is published as it is
	// (malformed JSON included). When empty, each line must be an envelope
	// {"subject": "...", "data": <any JSON>, "headers": {"k": "v"}} and data is published.
	Subject string
	// MsgIDPrefix, when set, gives each message the id MsgIDPrefix + line number, so that a
	// repeated publish within the stream's duplicate window adds nothing.
	MsgIDPrefix string
	// SkipBad skips the lines that are not envelopes instead of refusing the file.
	SkipBad bool
	// Window is the number of publishes awaiting their ack at once (default [DefaultWindow]).
	Window int
	// Progress, when set, is called with the number of lines acknowledged so far.
	Progress func(done int)
}

// BadLine is a line of a JSONL file that is not a publishable envelope.
type BadLine struct {
	Line   int
	Reason string
}

// Check is what [CheckJSONL] found in a file.
type Check struct {
	// Lines is the number of non-empty lines.
	Lines int
	// Bad are the lines that are not envelopes (at most maxBad of them are kept), BadCount
	// how many there are.
	Bad      []BadLine
	BadCount int
	// Subjects are the distinct subjects of the good lines (at most maxSubjects), each with
	// the first line that has it.
	Subjects map[string]int
}

const (
	maxBad      = 10
	maxSubjects = 1000
)

// Err returns the error of a file with bad lines (nil when it has none, or o.SkipBad): every
// bad line's number and reason, up to maxBad of them.
func (c Check) Err(o PublishOptions) error {
	if c.BadCount == 0 || o.SkipBad {
		return nil
	}
	var b strings.Builder
	for _, l := range c.Bad {
		fmt.Fprintf(&b, "\n  line %d: %s", l.Line, l.Reason)
	}
	if c.BadCount > len(c.Bad) {
		fmt.Fprintf(&b, "\n  and %d more", c.BadCount-len(c.Bad))
	}
	return fmt.Errorf("%w: %d of %d lines are not envelopes {\"subject\": ..., \"data\": ...}, nothing was published (fix them, pass --subject to publish lines as they are, or --skip-bad):%s",
		ErrBadLine, c.BadCount, c.Lines, b.String())
}

// Result counts what [PublishJSONL] did.
type Result struct {
	// Sent is the number of messages published, Stored those JetStream stored, Duplicates
	// those it dropped as repeats of a message id within the stream's duplicate window.
	Sent, Stored, Duplicates int
	// Skipped is the number of bad lines left out (with SkipBad).
	Skipped int
}

type envelope struct {
	Subject string            `json:"subject"`
	Data    json.RawMessage   `json:"data"`
	Headers map[string]string `json:"headers"`
}

// CheckJSONL reads every non-empty line of r as [PublishJSONL] would and reports what it
// found, publishing nothing.
func CheckJSONL(r io.Reader, o PublishOptions) (Check, error) {
	c := Check{Subjects: map[string]int{}}
	err := eachLine(r, func(line int, raw []byte) {
		c.Lines++
		m, err := lineMsg(raw, o)
		if err != nil {
			if c.BadCount++; len(c.Bad) < maxBad {
				c.Bad = append(c.Bad, BadLine{Line: line, Reason: err.Error()})
			}
			return
		}
		if _, seen := c.Subjects[m.Subject]; !seen && len(c.Subjects) < maxSubjects {
			c.Subjects[m.Subject] = line
		}
	})
	return c, err
}

// CheckCaptured returns an error wrapping [ErrUncaptured] for the first subject (by line) of
// subjects that no stream captures, naming the streams there are.
func CheckCaptured(ctx context.Context, js jetstream.JetStream, subjects map[string]int) error {
	byLine := make([]string, 0, len(subjects))
	for s := range subjects {
		byLine = append(byLine, s)
	}
	slices.SortFunc(byLine, func(a, b string) int { return subjects[a] - subjects[b] })
	for _, s := range byLine {
		_, err := js.StreamNameBySubject(ctx, s)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			var have []string
			names := js.ListStreams(ctx)
			for info := range names.Info() {
				if !strings.HasPrefix(info.Config.Name, "KV_") {
					have = append(have, fmt.Sprintf("%s %v", info.Config.Name, info.Config.Subjects))
				}
			}
			return fmt.Errorf("line %d: subject %s: %w (streams: %s)", subjects[s], s, ErrUncaptured, strings.Join(have, ", "))
		}
		if err != nil {
			return fmt.Errorf("line %d: subject %s: %w", subjects[s], s, err)
		}
	}
	return nil
}

// PublishJSONL publishes every non-empty line of r with asynchronous publishes. Check the file
// with [CheckJSONL] first: a bad line here ends the publish (or is skipped with o.SkipBad).
func PublishJSONL(ctx context.Context, js jetstream.JetStream, r io.Reader, o PublishOptions) (Result, error) {
	var res Result
	w := NewWindow(js, o.Window)
	done := 0
	w.OnAck = func(_ int, a *jetstream.PubAck) {
		if a.Duplicate {
			res.Duplicates++
		} else {
			res.Stored++
		}
		if done++; o.Progress != nil && done%w.size == 0 {
			o.Progress(done)
		}
	}
	var failed error
	err := eachLine(r, func(line int, raw []byte) {
		if failed != nil {
			return
		}
		m, err := lineMsg(raw, o)
		if err != nil {
			if o.SkipBad {
				res.Skipped++
				return
			}
			failed = fmt.Errorf("line %d: %w", line, err)
			return
		}
		if o.MsgIDPrefix != "" {
			if m.Header == nil {
				m.Header = nats.Header{}
			}
			m.Header.Set(jetstream.MsgIDHeader, o.MsgIDPrefix+strconv.Itoa(line))
		}
		if err := w.Publish(ctx, m); err != nil {
			failed = fmt.Errorf("line %d: %w", line, err)
			return
		}
		res.Sent++
	})
	ferr := w.Flush(ctx)
	if o.Progress != nil {
		o.Progress(done)
	}
	return res, errors.Join(failed, err, ferr)
}

// lineMsg makes the message of one line.
func lineMsg(raw []byte, o PublishOptions) (*nats.Msg, error) {
	m := &nats.Msg{Subject: o.Subject, Data: bytes.Clone(raw)}
	if o.Subject != "" {
		return m, nil
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("%w: not JSON", ErrBadLine)
	}
	if env.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrBadLine)
	}
	m.Subject, m.Data = env.Subject, env.Data
	if len(env.Headers) > 0 {
		m.Header = nats.Header{}
		for k, v := range env.Headers {
			m.Header.Set(k, v)
		}
	}
	return m, nil
}

// eachLine calls fn with every non-empty line of r (trimmed) and its 1-based number.
func eachLine(r io.Reader, fn func(line int, raw []byte)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 8*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		if raw := bytes.TrimSpace(sc.Bytes()); len(raw) > 0 {
			fn(line, raw)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read line %d: %w", line+1, err)
	}
	return nil
}
