package commit

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/operators/event"
	"github.com/nats-io/nats.go"
)

// TestNewDeadLetter: a dead letter keeps the application headers, renames every header NATS
// or JetStream acts on, and fits the payload limit (headers over the bound left out, payload
// cut), saying so in headers.
func TestNewDeadLetter(t *testing.T) {
	const limit = 4096
	tests := []struct {
		name      string
		header    nats.Header
		data      string
		wantKept  map[string]string // header -> value on the dead letter
		truncated bool
		dropped   bool
	}{
		{"control headers renamed", nats.Header{"Nats-Expected-Stream": {"EV"}, "nats-rollup": {"sub"}, "X-App": {"a"}}, `{"k":`,
			map[string]string{"Jetfold-Nats-Expected-Stream": "EV", "Jetfold-nats-rollup": "sub", "X-App": "a"}, false, false},
		{"payload cut to the limit", nil, strings.Repeat("x", limit), nil, true, false},
		{"headers over the bound left out", nats.Header{"X-Big": {strings.Repeat("h", maxAppHeaders)}}, "x", nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newDeadLetter(deadLetterOf{pipeline: "p", seq: 7, subject: "ev.a", data: []byte(tt.data), header: tt.header,
				reason: errors.New("line one\nline two").Error(), id: "p:7:dlq", limit: limit})
			for k := range m.Header {
				if strings.HasPrefix(strings.ToLower(k), "nats-") && k != "Nats-Msg-Id" {
					t.Errorf("header %s kept", k)
				}
			}
			for k, v := range tt.wantKept {
				if got := m.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if got := m.Header.Get(HeaderError); got != "line one line two" {
				t.Errorf("%s = %q, want the reason on one line", HeaderError, got)
			}
			if m.Header.Get(HeaderSourceSeq) != "7" || m.Header.Get(HeaderSourceSubject) != "ev.a" || m.Subject != "_jetfold.dlq.p" {
				t.Errorf("coordinates: %v on %s", m.Header, m.Subject)
			}
			if size := len(m.Data) + headerSize(m.Header); size > limit-HeaderSlack {
				t.Errorf("%d bytes, over the limit less the slack", size)
			}
			if got := m.Header.Get(HeaderTruncated); (got != "") != tt.truncated || tt.truncated && got != strconv.Itoa(len(tt.data)) {
				t.Errorf("%s = %q", HeaderTruncated, got)
			}
			if got := m.Header.Get(HeaderDropped); (got != "") != tt.dropped {
				t.Errorf("%s = %q", HeaderDropped, got)
			}
		})
	}
}

// TestDerivedIDs: a derived event's id is made of its source sequence and index, or is the
// operator's own; a tick's (no key) has no ce-subject.
func TestDerivedIDs(t *testing.T) {
	tests := []struct {
		name, key, id, wantID string
	}{
		{"of an event", "user-1", "", "p:7:2"},
		{"of a tick, with the operator's id", "", "win:a/0", "p:win:a/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := &event.Event{Seq: 7, Key: tt.key}
			m := Derived("p", ev, 2, event.Output{Subject: "out.x", Type: "t", Data: []byte("{}"), ID: tt.id})
			if got := m.Header.Get("Nats-Msg-Id"); got != tt.wantID || m.Header.Get("ce-id") != tt.wantID {
				t.Errorf("ids %q, %q; want %q", got, m.Header.Get("ce-id"), tt.wantID)
			}
			if _, has := m.Header["ce-subject"]; has != (tt.key != "") {
				t.Errorf("ce-subject %v with key %q", m.Header["ce-subject"], tt.key)
			}
			if m.Header.Get(HeaderSourceSeq) != "7" {
				t.Errorf("%s = %q", HeaderSourceSeq, m.Header.Get(HeaderSourceSeq))
			}
		})
	}
}
