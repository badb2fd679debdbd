package casetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
)

// File is a case file as loaded by [Engine.Load]: its cases, and the text they came from,
// which [File.Update] rewrites.
type File struct {
	// Path is the file's path, as given to Load.
	Path string
	// Cases are the file's cases, in order.
	Cases []*Case

	data []byte
	doc  *yaml.Node // the document node
}

// Case is one test case: the events to publish and what the pipelines must make of them.
type Case struct {
	// Name names the case; it is unique among the files loaded together.
	Name string
	// File is the file that holds the case.
	File *File
	// Pos is where the case starts in its file.
	Pos diag.Pos
	// Events are the events to publish, in order.
	Events []Event
	// Expect is what the case expects; a case without expectations fails (see
	// [Expect.Empty]).
	Expect Expect

	item      *yaml.Node // the case's list item as written (maybe an alias)
	expectKey *yaml.Node // the key node of expect, nil without one
}

// Event is an input event of a case.
type Event struct {
	// Stream is the stream the case lists the event under; its subjects capture Subject.
	Stream string
	// Subject is the subject the event is published to.
	Subject string
	// Data is the payload: a string as it is, any other value as JSON; nil when the case
	// gives none.
	Data []byte
	// Header holds the event's headers, and ce-time when the case gives the event a time.
	Header nats.Header
	// Pos is where the event is in its file.
	Pos diag.Pos
}

// Expect is what a case expects after its events went through the pipelines. A section left
// out is not checked; one that is present is the whole truth about what it covers.
type Expect struct {
	// Pos is the place of the expect key; zero when the case has none.
	Pos diag.Pos
	// Projections lists, per projection named, every key it must hold and its value. A
	// projection that is not named is not checked.
	Projections []ProjectionExpect
	// CheckDerived tells that the case lists the derived events: Derived must then match
	// the derived events one for one, in any order.
	CheckDerived bool
	// Derived are the derived events expected.
	Derived []DerivedExpect
	// DerivedPos is the place of the derived key.
	DerivedPos diag.Pos
	// CheckDeadLetters tells that the case lists the dead letters: each expectation must
	// match its count of them, and every dead letter must match one.
	CheckDeadLetters bool
	// DeadLetters are the dead letters expected.
	DeadLetters []DeadLetterExpect
	// DeadLettersPos is the place of the dead_letters key.
	DeadLettersPos diag.Pos
}

// Empty reports whether e checks nothing: no projection, no derived events, no dead letters.
func (e Expect) Empty() bool {
	return len(e.Projections) == 0 && !e.CheckDerived && !e.CheckDeadLetters
}

// ProjectionExpect is the expected content of one projection.
type ProjectionExpect struct {
	// Name is the projection's name.
	Name string
	// Keys are the keys the projection must hold (and those it must not, with a nil Value);
	// it must hold no other key.
	Keys []KeyExpect
	// Pos is the place of the projection's name.
	Pos diag.Pos
}

// KeyExpect is the expected value of one key of a projection.
type KeyExpect struct {
	// Key is the key, as the pipelines compute it (not its encoded KV form).
	Key string
	// Value is the expected value as JSON, compared as JSON; members of the actual value
	// whose names start with "_" and that Value does not name are ignored. nil (null in
	// the case) expects the key to have no value.
	Value json.RawMessage
	// Pos is the place of the key.
	Pos diag.Pos
}

// DerivedExpect is one expected derived event.
type DerivedExpect struct {
	// Subject is the derived event's subject.
	Subject string
	// Data is its expected payload as JSON; nil (data left out) accepts any payload.
	Data json.RawMessage
	// Type is its expected CloudEvents type (ce-type); "" accepts any.
	Type string
	// Pos is the place of the expectation.
	Pos diag.Pos
}

// DeadLetterExpect expects a number of dead letters.
type DeadLetterExpect struct {
	// Pipeline, when set, restricts the expectation to that pipeline's dead letters.
	Pipeline string
	// Subject, when set, is the dead letter's subject: that of its source event, or of the
	// derived event JetStream refused.
	Subject string
	// Reason, when set, must be part of the dead letter's reason (Jetfold-Error), in any case.
	Reason string
	// Count is how many dead letters must match (1 when the case does not say).
	Count int
	// Pos is the place of the expectation.
	Pos diag.Pos
}

// matches reports whether the dead letter d matches x.
func (x DeadLetterExpect) matches(d DeadLetter) bool {
	return (x.Pipeline == "" || x.Pipeline == d.Pipeline) &&
		(x.Subject == "" || x.Subject == d.Subject) &&
		(x.Reason == "" || strings.Contains(strings.ToLower(d.Reason), strings.ToLower(x.Reason)))
}

// describe says what x selects: subject shop.cart.x, reason "decode".
func (x DeadLetterExpect) describe() string {
	var parts []string
	if x.Pipeline != "" {
		parts = append(parts, "pipeline "+x.Pipeline)
	}
	if x.Subject != "" {
		parts = append(parts, "subject "+x.Subject)
	}
	if x.Reason != "" {
		parts = append(parts, "reason "+quote(x.Reason))
	}
	return strings.Join(parts, ", ")
}

// ceTime is the header the time of an event goes in: the CloudEvents time attribute of the
// binary mode, which a pipeline reads with `time: headers["ce-time"]`.
const ceTime = "ce-time"

// Load reads the case files at paths. Every problem of every file is reported at once, each
// a [*diag.Error] (file:line:col: message), joined with errors.Join in file order; a case
// name used twice, a stream, projection or pipeline the configuration does not have, and a
// subject the stream does not capture are problems too. A file that cannot be read is an
// error of its own.
func (e *Engine) Load(paths ...string) ([]*File, error) {
	var files []*File
	var errs []error
	names := map[string]diag.Pos{}
	for _, path := range paths {
		f, err := e.loadFile(path, names)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

// loadFile reads one case file; names holds the case names of the files read before.
func (e *Engine) loadFile(path string, names map[string]diag.Pos) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cases: %w", err)
	}
	f := &File{Path: path, data: data}
	l := &loader{e: e, f: f}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, diag.JoinSorted([]*diag.Error{{Pos: diag.Pos{File: path, Line: 1, Col: 1},
				Msg: "the file holds no cases", Hint: "start with cases: and a list of cases"}})
		}
		return nil, diag.JoinSorted(config.YAMLErrors(path, data, err))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		l.fail(at, "keep every case in the first document", "the file holds more than one YAML document")
	case !errors.Is(err, io.EOF):
		return nil, diag.JoinSorted(config.YAMLErrors(path, data, err))
	}
	f.doc = &doc
	if len(doc.Content) > 0 {
		l.top(doc.Content[0], names)
	}
	if len(l.errs) > 0 {
		return nil, diag.JoinSorted(l.errs)
	}
	return f, nil
}

// loader reads one case file, collecting its problems.
type loader struct {
	e    *Engine
	f    *File
	errs []*diag.Error
}

func (l *loader) at(n *yaml.Node) diag.Pos {
	return diag.Pos{File: l.f.Path, Line: max(n.Line, 1), Col: max(n.Column, 1)}
}

func (l *loader) fail(n *yaml.Node, hint, format string, args ...any) {
	l.errs = append(l.errs, &diag.Error{Pos: l.at(n), Msg: fmt.Sprintf(format, args...), Hint: hint})
}

// resolve follows aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// kindName names what n is, for messages.
func kindName(n *yaml.Node) string {
	n = resolve(n)
	switch {
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.ShortTag() == "!!null":
		return "nothing"
	}
	return "the scalar " + quote(n.Value)
}

// isNull reports whether n is empty: `key:` with nothing, ~ or null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

type pair struct{ key, val *yaml.Node }

// pairs returns the members of the mapping n in order, merge keys (<<) expanded after them
// (a key written in n wins), and reports keys that are not scalars or appear twice.
func (l *loader) pairs(n *yaml.Node) []pair {
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, l.mergePairs(v)...)
			continue
		}
		rk := resolve(k)
		if rk.Kind != yaml.ScalarNode {
			l.fail(k, "", "a key must be a scalar, got %s", kindName(k))
			continue
		}
		if first, ok := seen[rk.Value]; ok {
			l.fail(k, "", "duplicate key %q (first at line %d)", rk.Value, first.Line)
			continue
		}
		seen[rk.Value] = k
		out = append(out, pair{k, v})
	}
	for _, p := range merged {
		if _, ok := seen[resolve(p.key).Value]; !ok {
			seen[resolve(p.key).Value] = p.key
			out = append(out, p)
		}
	}
	return out
}

// mergePairs returns the members a merge key brings: those of a map, or of a list of maps
// (the first map wins).
func (l *loader) mergePairs(v *yaml.Node) []pair {
	r := resolve(v)
	switch r.Kind {
	case yaml.MappingNode:
		return l.pairs(r)
	case yaml.SequenceNode:
		var out []pair
		for _, m := range r.Content {
			out = append(out, l.mergePairs(m)...)
		}
		return out
	}
	l.fail(v, "", "a merge (<<) takes a map or a list of maps, got %s", kindName(v))
	return nil
}

// fields reads the mapping n whose keys must be among names; what names it in messages.
func (l *loader) fields(n *yaml.Node, what string, names ...string) (map[string]pair, bool) {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		l.fail(n, "fields: "+strings.Join(names, ", "), "%s must be a map, got %s", what, kindName(n))
		return nil, false
	}
	out := map[string]pair{}
	for _, p := range l.pairs(r) {
		k := resolve(p.key).Value
		if !slices.Contains(names, k) {
			l.fail(p.key, diag.HintFor(k, names, "valid fields"), "unknown field %q in %s", k, what)
			continue
		}
		out[k] = p
	}
	return out, true
}

// str reads a scalar as a string (a number or bool as written); what names it in messages.
func (l *loader) str(n *yaml.Node, what string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode || r.ShortTag() == "!!null" {
		l.fail(n, "", "%s must be a string, got %s", what, kindName(n))
		return "", false
	}
	return r.Value, true
}

// list reads a sequence; empty (null) is an empty list.
func (l *loader) list(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	r := resolve(n)
	if isNull(r) {
		return nil, true
	}
	if r.Kind != yaml.SequenceNode {
		l.fail(n, "", "%s must be a list, got %s", what, kindName(n))
		return nil, false
	}
	return r.Content, true
}

// value reads n as a JSON value (members kept in order). A timestamp is its text; NaN,
// infinities and tags YAML does not define for JSON's values are errors.
func (l *loader) value(n *yaml.Node) (any, bool) {
	r := resolve(n)
	switch r.Kind {
	case yaml.MappingNode:
		o := newObject()
		ok := true
		for _, p := range l.pairs(r) {
			v, vok := l.value(p.val)
			ok = ok && vok
			o.set(resolve(p.key).Value, v)
		}
		return o, ok
	case yaml.SequenceNode:
		list := []any{}
		ok := true
		for _, item := range r.Content {
			v, vok := l.value(item)
			ok = ok && vok
			list = append(list, v)
		}
		return list, ok
	case yaml.ScalarNode:
		switch r.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := r.Decode(&b); err != nil {
				l.fail(n, "", "%v", err)
				return nil, false
			}
			return b, true
		case "!!int":
			var v any
			if err := r.Decode(&v); err != nil {
				l.fail(n, "", "%v", err)
				return nil, false
			}
			if f, ok := v.(float64); ok {
				return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
			}
			return json.Number(fmt.Sprint(v)), true
		case "!!float":
			var f float64
			if err := r.Decode(&f); err != nil {
				l.fail(n, "", "%v", err)
				return nil, false
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				l.fail(n, "quote it to mean the string", "%s is not a JSON number", r.Value)
				return nil, false
			}
			return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
		case "!!str", "!!timestamp", "!!binary":
			return r.Value, true
		}
		l.fail(n, "quote it to mean the string", "unsupported tag %s", r.Tag)
		return nil, false
	}
	l.fail(n, "", "unsupported YAML node")
	return nil, false
}

// top reads the top level: cases: and its list.
func (l *loader) top(root *yaml.Node, names map[string]diag.Pos) {
	fs, ok := l.fields(root, "the top level", "cases")
	if !ok {
		return
	}
	p, ok := fs["cases"]
	if !ok {
		l.fail(root, "start with cases: and a list of cases", "no cases: the file needs a cases list")
		return
	}
	items, ok := l.list(p.val, "cases")
	if !ok {
		return
	}
	if len(items) == 0 {
		l.fail(p.key, "", "the cases list is empty")
	}
	for _, item := range items {
		if c := l.caseAt(item, names); c != nil {
			l.f.Cases = append(l.f.Cases, c)
		}
	}
}

// caseAt reads one case.
func (l *loader) caseAt(item *yaml.Node, names map[string]diag.Pos) *Case {
	fs, ok := l.fields(item, "a case", "name", "events", "expect")
	if !ok {
		return nil
	}
	c := &Case{File: l.f, Pos: l.at(item), item: item}
	if p, ok := fs["name"]; !ok {
		l.fail(item, "", "the case has no name")
	} else if c.Name, ok = l.str(p.val, "name"); ok {
		switch first, dup := names[c.Name]; {
		case c.Name == "":
			l.fail(p.val, "", "the case name is empty")
		case dup:
			l.fail(p.val, "", "case name %q is already used at %s", c.Name, first)
		default:
			names[c.Name] = l.at(p.val)
		}
	}
	if p, ok := fs["events"]; !ok {
		l.fail(item, "list them per stream, such as events: {SHOP: [{subject: shop.cart.u1, data: {...}}]}", "the case has no events")
	} else {
		l.events(c, p)
	}
	if p, ok := fs["expect"]; ok {
		c.expectKey = p.key
		c.Expect = l.expect(p)
	}
	return c
}

// events reads events: STREAM: [event, ...], ...
func (l *loader) events(c *Case, p pair) {
	r := resolve(p.val)
	if r.Kind != yaml.MappingNode {
		l.fail(p.val, "list them per stream, such as events: {SHOP: [{subject: shop.cart.u1, data: {...}}]}",
			"events must be a map of stream names to lists of events, got %s", kindName(p.val))
		return
	}
	listed := 0
	for _, sp := range l.pairs(r) {
		name := resolve(sp.key).Value
		stream, ok := l.e.stream(name)
		if !ok {
			l.fail(sp.key, diag.HintFor(name, l.e.streamNames(), "declared streams"), "unknown stream %q", name)
		}
		items, lok := l.list(sp.val, "the events of stream "+name)
		if !lok {
			continue
		}
		listed += len(items)
		for _, item := range items {
			if ev, eok := l.event(stream, name, item); eok && ok {
				c.Events = append(c.Events, ev)
			}
		}
	}
	if listed == 0 {
		l.fail(p.key, "", "the case has no events")
	}
}

// event reads one event of the declared stream s (zero when unknown), listed under name.
func (l *loader) event(s config.Stream, name string, item *yaml.Node) (Event, bool) {
	ev := Event{Stream: name, Pos: l.at(item)}
	fs, ok := l.fields(item, "an event", "subject", "data", "headers", "time")
	if !ok {
		return ev, false
	}
	p, has := fs["subject"]
	if !has {
		l.fail(item, "", "the event has no subject")
		return ev, false
	}
	if ev.Subject, ok = l.str(p.val, "subject"); !ok {
		return ev, false
	}
	if err := checkSubject(ev.Subject); err != nil {
		l.fail(p.val, "", "subject %q: %v", ev.Subject, err)
		ok = false
	} else if s.Name != "" && !captures(s.Subjects, ev.Subject) {
		hint := fmt.Sprintf("stream %s captures %s", s.Name, strings.Join(s.Subjects, ", "))
		for _, o := range l.e.cfg.Streams {
			if captures(o.Subjects, ev.Subject) {
				hint = "list the event under stream " + o.Name + ", which captures it"
			}
		}
		l.fail(p.val, hint, "stream %s does not capture subject %s", s.Name, ev.Subject)
		ok = false
	}
	if p, has := fs["data"]; has {
		r := resolve(p.val)
		if r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str" {
			ev.Data = []byte(r.Value) // a string is the payload as it is
		} else if v, vok := l.value(p.val); vok {
			ev.Data = []byte(jsonText(v))
		} else {
			ok = false
		}
	}
	if p, has := fs["headers"]; has {
		if ev.Header, has = l.headers(p.val); !has {
			ok = false
		}
	}
	if p, has := fs["time"]; has {
		ts, sok := l.str(p.val, "time")
		if _, err := time.Parse(time.RFC3339Nano, ts); sok && err != nil {
			l.fail(p.val, "such as 2026-11-01T09:00:00Z", "time %q is not RFC3339", ts)
			sok = false
		}
		if sok && hasHeader(ev.Header, ceTime) {
			l.fail(p.key, "", "the event has both a time and a %s header", ceTime)
			sok = false
		}
		if sok {
			if ev.Header == nil {
				ev.Header = nats.Header{}
			}
			ev.Header.Set(ceTime, ts)
		}
		ok = ok && sok
	}
	return ev, ok
}

// headers reads headers: {Name: value, Other: [v1, v2]}.
func (l *loader) headers(n *yaml.Node) (nats.Header, bool) {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		l.fail(n, "such as headers: {x-user: u1}", "headers must be a map, got %s", kindName(n))
		return nil, false
	}
	h := nats.Header{}
	ok := true
	for _, p := range l.pairs(r) {
		name := resolve(p.key).Value
		if name == "" || strings.ContainsAny(name, " \t\r\n:") {
			l.fail(p.key, "", "invalid header name %q", name)
			ok = false
			continue
		}
		vals := []*yaml.Node{p.val}
		if rv := resolve(p.val); rv.Kind == yaml.SequenceNode {
			vals = rv.Content
		}
		for _, v := range vals {
			s, sok := l.str(v, "header "+name)
			if sok && strings.ContainsAny(s, "\r\n") {
				l.fail(v, "", "header %s: a value cannot hold a line break", name)
				sok = false
			}
			if !sok {
				ok = false
				continue
			}
			h[name] = append(h[name], s) // as written: NATS headers keep their case
		}
	}
	return h, ok
}

// expect reads expect: {projections, derived, dead_letters}.
func (l *loader) expect(p pair) Expect {
	x := Expect{Pos: l.at(p.key)}
	if isNull(p.val) {
		return x
	}
	fs, ok := l.fields(p.val, "expect", "projections", "derived", "dead_letters")
	if !ok {
		return x
	}
	if pp, ok := fs["projections"]; ok {
		x.Projections = l.projections(pp.val)
	}
	if dp, ok := fs["derived"]; ok {
		x.CheckDerived, x.DerivedPos = true, l.at(dp.key)
		items, _ := l.list(dp.val, "derived")
		for _, item := range items {
			if d, ok := l.derived(item); ok {
				x.Derived = append(x.Derived, d)
			}
		}
	}
	if dp, ok := fs["dead_letters"]; ok {
		x.CheckDeadLetters, x.DeadLettersPos = true, l.at(dp.key)
		items, _ := l.list(dp.val, "dead_letters")
		for _, item := range items {
			if d, ok := l.deadLetter(item); ok {
				x.DeadLetters = append(x.DeadLetters, d)
			}
		}
	}
	return x
}

// projections reads projections: {NAME: {KEY: value, ...}, ...}.
func (l *loader) projections(n *yaml.Node) []ProjectionExpect {
	r := resolve(n)
	if r.Kind != yaml.MappingNode {
		l.fail(n, "such as projections: {carts: {user-1: {items: 1}}}", "projections must be a map, got %s", kindName(n))
		return nil
	}
	var out []ProjectionExpect
	for _, p := range l.pairs(r) {
		name := resolve(p.key).Value
		if !slices.Contains(l.e.projections, name) {
			l.fail(p.key, diag.HintFor(name, l.e.projections, "projections"), "unknown projection %q", name)
			continue
		}
		pe := ProjectionExpect{Name: name, Pos: l.at(p.key)}
		keys := resolve(p.val)
		switch {
		case isNull(keys):
		case keys.Kind != yaml.MappingNode:
			l.fail(p.val, "such as "+name+": {user-1: {items: 1}}", "projection %s must be a map of keys to values, got %s", name, kindName(p.val))
			continue
		default:
			for _, kp := range l.pairs(keys) {
				key := resolve(kp.key).Value
				if key == "" {
					l.fail(kp.key, "", "a projection key cannot be empty")
					continue
				}
				v, ok := l.value(kp.val)
				if !ok {
					continue
				}
				ke := KeyExpect{Key: key, Pos: l.at(kp.key)}
				if v != nil {
					ke.Value = json.RawMessage(jsonText(v))
				}
				pe.Keys = append(pe.Keys, ke)
			}
		}
		out = append(out, pe)
	}
	return out
}

// derived reads one expected derived event.
func (l *loader) derived(item *yaml.Node) (DerivedExpect, bool) {
	d := DerivedExpect{Pos: l.at(item)}
	fs, ok := l.fields(item, "a derived event", "subject", "data", "type")
	if !ok {
		return d, false
	}
	p, has := fs["subject"]
	if !has {
		l.fail(item, "", "the derived event has no subject")
		return d, false
	}
	if d.Subject, ok = l.str(p.val, "subject"); !ok {
		return d, false
	}
	if p, has := fs["data"]; has {
		v, vok := l.value(p.val)
		if !vok {
			return d, false
		}
		d.Data = json.RawMessage(jsonText(v))
	}
	if p, has := fs["type"]; has {
		if d.Type, ok = l.str(p.val, "type"); !ok {
			return d, false
		}
	}
	return d, true
}

// deadLetter reads one dead-letter expectation.
func (l *loader) deadLetter(item *yaml.Node) (DeadLetterExpect, bool) {
	d := DeadLetterExpect{Pos: l.at(item), Count: 1}
	fs, ok := l.fields(item, "a dead-letter expectation", "pipeline", "subject", "reason", "count")
	if !ok {
		return d, false
	}
	text := func(name string, to *string) {
		if p, has := fs[name]; has {
			v, vok := l.str(p.val, name)
			*to, ok = v, ok && vok
		}
	}
	text("pipeline", &d.Pipeline)
	text("subject", &d.Subject)
	text("reason", &d.Reason)
	if p := fs["pipeline"]; d.Pipeline != "" && !slices.Contains(l.e.pipelines, d.Pipeline) {
		l.fail(p.val, diag.HintFor(d.Pipeline, l.e.pipelines, "pipelines"), "unknown pipeline %q", d.Pipeline)
		ok = false
	}
	if _, has := fs["subject"]; !has && fs["reason"].key == nil {
		l.fail(item, "such as {subject: shop.cart.user-9, reason: decode, count: 1}", "a dead-letter expectation needs a subject or a reason")
		ok = false
	}
	if p, has := fs["count"]; has {
		r := resolve(p.val)
		n, err := strconv.Atoi(r.Value)
		if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!int" || err != nil || n < 0 {
			l.fail(p.val, "", "count must be a whole number, 0 or more, got %s", kindName(p.val))
			ok = false
		}
		d.Count = n
	}
	return d, ok
}

// checkSubject tells why s cannot be published to, or nil.
func checkSubject(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return errors.New("holds whitespace")
	}
	for _, t := range strings.Split(s, ".") {
		switch t {
		case "":
			return errors.New("has an empty token")
		case "*", ">":
			return errors.New("has a wildcard: an event goes to one subject")
		}
	}
	return nil
}

// captures reports whether one of the subject filters (with wildcards) matches subject.
func captures(filters []string, subject string) bool {
	return slices.ContainsFunc(filters, func(f string) bool { return server.SubjectMatchesFilter(subject, f) })
}

// hasHeader reports whether h has the header name, in any case.
func hasHeader(h nats.Header, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}
