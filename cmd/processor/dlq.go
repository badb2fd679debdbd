package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/jetfold/jetfold/pipeline/dlq"
	"github.com/jetfold/jetfold/streams"
)

// dlqActions are the things dlq does, with the flags each takes.
var dlqActions = map[string][]string{
	"list":    {"json", "reason", "seq", "limit"},
	"show":    {"json"},
	"redrive": {"reason", "seq", "limit", "dry-run", "keep"},
}

// dlqFlags are the dlq command's flags; dlqActions says which action takes which.
type dlqFlags struct {
	json, dryRun, keep bool
	reason, seq        string
	limit              int
}

const dlqLong = `List, show and redrive the dead letters of a pipeline.

The dead letters of pipeline P are the messages on subject _jetfold.dlq.P, in whichever
stream captures that subject (JETFOLD_DLQ unless a declared stream does). SEQ and --seq are
their sequences in that stream, as list prints them. --seq takes 5, 3-9, 1,4,10-12 or 10-
(10 and after). --reason keeps the dead letters whose reason contains the text, ignoring case.

  list      prints one line per dead letter: its sequence, the source event's sequence, its
            subject, when it was dead-lettered and why. --json prints a JSON array.
  show SEQ  prints one dead letter: what the pipeline recorded, every header, and the
            payload (as is when it is UTF-8 text, else base64).
  redrive   publishes the selected dead letters' events again, one at a time in stream
            order, to their original subjects (for a derived event JetStream refused: to
            the subject it was emitted to), with their payload and application headers,
            and deletes each dead letter once the target stream has acknowledged its
            event (--keep: never). --dry-run prints what it would publish and changes
            nothing. It ends with the counts: redriven, skipped and why, failed, deleted.

Redrive, ordering and exactly-once:
  - A redriven event is a new event at the head of its stream, with a new sequence. A
    pipeline applies it after every event that followed it originally, not in its old
    place.
  - With a time: expression, a redriven event older than its key's newest applied event
    time is outdated: folds with handler: on (the default) skip it, and emits with
    handler: on or once do not fire; only handler: all applies it. Without time:, an
    event's time is its message's, and a redriven event is never outdated.
  - A dead letter is deleted only after the target stream has acknowledged its event. If
    redrive stops in between, both remain; the next redrive publishes the event again with
    the same Nats-Msg-Id, redrive:<pipeline>:<dead letter seq>, which the target stream
    drops as a duplicate within its duplicate window (2 minutes by default; the
    duplicate_window of a declared stream), and then deletes the dead letter. After that
    window, the event would be stored twice.
  - The Jetfold-* headers are not sent again, nor the source's Nats-* headers that the
    dead letter keeps as Jetfold-Nats-*: they hold publish-time conditions (expected
    stream or last sequence, message id, TTL, ...) that would fail again or drop the event.
    A derived event keeps Jetfold-Source-Seq, which every derived event carries.
  - A dead letter whose payload was truncated, or whose source headers were left out, no
    longer holds the original event: redrive skips it, keeps it, and counts it.

Exit status: 0 on success (also when there are no dead letters), 2 when show finds no dead
letter at SEQ, 1 for any other error, including a redrive that could not republish or
delete every selected dead letter.`

const dlqExample = `  processor dlq -c pipelines.yaml carts list
  processor dlq -c pipelines.yaml carts list --reason "does not decode" --json
  processor dlq -c pipelines.yaml carts show 42
  processor dlq -c pipelines.yaml carts redrive --seq 40-45 --dry-run
  processor dlq -c pipelines.yaml carts redrive --reason "expression failed"`

func dlqCmd(g *globals) *cobra.Command {
	var f dlqFlags
	cmd := &cobra.Command{
		Use:     "dlq PIPELINE (list | show SEQ | redrive)",
		Short:   "List, show and redrive a pipeline's dead letters",
		Long:    dlqLong,
		Example: dlqExample,
		Args:    dlqArgs,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				_, ps, err := g.load()
				if err != nil {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return pipelineNames(ps), cobra.ShellCompDirectiveNoFileComp
			case 1:
				return []string{"list", "show", "redrive"}, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name, action := args[0], args[1]
			for _, fl := range []string{"json", "reason", "seq", "limit", "dry-run", "keep"} {
				if cmd.Flags().Changed(fl) && !slices.Contains(dlqActions[action], fl) {
					return fmt.Errorf("dlq %s does not take --%s", action, fl)
				}
			}
			filter, err := f.filter()
			if err != nil {
				return err
			}
			// Check the name before connecting: with an embedded server, connecting starts it.
			_, ps, err := g.load()
			if err != nil {
				return err
			}
			if findPipeline(ps, name) == nil {
				return fmt.Errorf("no pipeline %q in %s; its pipelines: %s", name, g.config, strings.Join(pipelineNames(ps), ", "))
			}
			_, _, conn, err := g.openExisting(cmd.Context(), g.stdout)
			if conn == nil {
				return err // nil when nothing was started yet: openExisting said so
			}
			defer conn.Close()
			d := dlqRun{g: g, f: f, pipeline: name}
			switch action {
			case "list":
				return d.list(cmd, conn, filter)
			case "show":
				seq, _ := strconv.ParseUint(args[2], 10, 64) // checked by dlqArgs
				return d.show(cmd, conn, seq)
			default:
				return d.redrive(cmd, conn, filter)
			}
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.json, "json", false, "print JSON (list, show)")
	fl.StringVar(&f.reason, "reason", "", "only dead letters whose reason contains this text, ignoring case (list, redrive)")
	fl.StringVar(&f.seq, "seq", "", "only these dead-letter sequences: 5, 3-9, 1,4,10-12, 10- (list, redrive)")
	fl.IntVar(&f.limit, "limit", 0, "at most N dead letters, the first that match (list, redrive)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print what would be published and deleted, change nothing (redrive)")
	fl.BoolVar(&f.keep, "keep", false, "keep the dead letters after their events are republished (redrive)")
	return cmd
}

// dlqArgs checks PIPELINE ACTION [SEQ].
func dlqArgs(_ *cobra.Command, args []string) error {
	const usage = "usage: processor dlq PIPELINE (list | show SEQ | redrive)"
	if len(args) < 2 {
		if len(args) == 1 && dlqActions[args[0]] != nil {
			return fmt.Errorf("name the pipeline before %s; %s", args[0], usage)
		}
		return errors.New(usage)
	}
	action := args[1]
	if dlqActions[action] == nil {
		if dlqActions[args[0]] != nil {
			return fmt.Errorf("name the pipeline before %s: processor dlq %s %s", args[0], args[1], args[0])
		}
		return fmt.Errorf("unknown dlq action %q; %s", action, usage)
	}
	switch {
	case action == "show" && len(args) != 3:
		return errors.New("usage: processor dlq PIPELINE show SEQ")
	case action == "show":
		if n, err := strconv.ParseUint(args[2], 10, 64); err != nil || n == 0 {
			return fmt.Errorf("dlq show: %q is not a sequence (a number from 1, as list prints)", args[2])
		}
	case len(args) != 2:
		return fmt.Errorf("dlq %s takes no more arguments, got %q", action, args[2:])
	}
	return nil
}

// filter builds the dead-letter filter of the flags.
func (f dlqFlags) filter() (dlq.Filter, error) {
	seqs, err := dlq.ParseSeqs(f.seq)
	if err != nil {
		return dlq.Filter{}, fmt.Errorf("--seq: %w", err)
	}
	if f.limit < 0 {
		return dlq.Filter{}, fmt.Errorf("--limit %d: want 0 (no limit) or more", f.limit)
	}
	return dlq.Filter{Reason: f.reason, Seqs: seqs, Limit: f.limit}, nil
}

// filtered tells whether a flag narrows the selection.
func (f dlqFlags) filtered() bool { return f.reason != "" || f.seq != "" }

// dlqRun is one dlq command.
type dlqRun struct {
	g        *globals
	f        dlqFlags
	pipeline string
}

// none says that nothing was selected.
func (d dlqRun) none() {
	if d.f.filtered() {
		fmt.Fprintf(d.g.stdout, "no dead letters of pipeline %s match the filter\n", d.pipeline)
		return
	}
	fmt.Fprintf(d.g.stdout, "no dead letters for pipeline %s\n", d.pipeline)
}

// letterJSON is a dead letter in list --json.
type letterJSON struct {
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"dlq_seq"`
	SourceSeq uint64    `json:"source_seq"`
	Subject   string    `json:"subject"`
	Derived   bool      `json:"derived"`
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"`
	Truncated bool      `json:"truncated"`
}

func summary(l dlq.Letter) letterJSON {
	return letterJSON{
		Stream: l.Stream, Seq: l.Seq, SourceSeq: l.SourceSeq, Subject: l.Subject(), Derived: l.Derived(),
		Time: l.Time.UTC(), Reason: l.Reason, Truncated: l.Truncated,
	}
}

func (d dlqRun) list(cmd *cobra.Command, conn *streams.Conn, filter dlq.Filter) error {
	limit := filter.Limit
	if limit > 0 {
		filter.Limit++ // one more tells whether there are more
	}
	letters, err := dlq.List(cmd.Context(), conn.JS, d.pipeline, filter)
	if err != nil {
		return err
	}
	more := limit > 0 && len(letters) > limit
	if more {
		letters = letters[:limit]
		defer fmt.Fprintf(d.g.stderr, "more dead letters match: showing the first %d (--limit)\n", limit)
	}
	if d.f.json {
		out := make([]letterJSON, len(letters))
		for i, l := range letters {
			out[i] = summary(l)
		}
		return printJSON(d.g.stdout, out)
	}
	if len(letters) == 0 {
		d.none()
		return nil
	}
	tw := tabwriter.NewWriter(d.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ SEQ\tSOURCE SEQ\tSUBJECT\tTIME\tREASON")
	for _, l := range letters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", l.Seq, orDash(l.SourceSeq), orDashS(l.Subject()), l.Time.UTC().Format(time.RFC3339), l.Reason)
	}
	return tw.Flush()
}

// letterDetail is a dead letter in show --json.
type letterDetail struct {
	letterJSON
	SourceSubject  string              `json:"source_subject,omitempty"`
	EmitSubject    string              `json:"emit_subject,omitempty"`
	OriginalSize   int                 `json:"original_size,omitempty"`
	HeadersDropped int                 `json:"headers_dropped,omitempty"`
	Headers        map[string][]string `json:"headers"`
	Size           int                 `json:"size"`
	// Payload is the payload when it is valid UTF-8, else PayloadBase64 is.
	Payload       *string `json:"payload,omitempty"`
	PayloadBase64 string  `json:"payload_base64,omitempty"`
}

func (d dlqRun) show(cmd *cobra.Command, conn *streams.Conn, seq uint64) error {
	l, err := dlq.Get(cmd.Context(), conn.JS, d.pipeline, seq)
	if errors.Is(err, dlq.ErrNotFound) {
		return &exitError{code: 2, err: err}
	}
	if err != nil {
		return err
	}
	text := utf8.Valid(l.Data)
	if d.f.json {
		out := letterDetail{
			letterJSON: summary(l), SourceSubject: l.SourceSubject, EmitSubject: l.EmitSubject,
			OriginalSize: l.OriginalSize, HeadersDropped: l.HeadersDropped, Headers: l.Header, Size: len(l.Data),
		}
		if text {
			s := string(l.Data)
			out.Payload = &s
		} else {
			out.PayloadBase64 = base64.StdEncoding.EncodeToString(l.Data)
		}
		return printJSON(d.g.stdout, out)
	}
	w := d.g.stdout
	fmt.Fprintf(w, "dead letter %d of pipeline %s (stream %s)\n", l.Seq, d.pipeline, l.Stream)
	fmt.Fprintf(w, "time:       %s\n", l.Time.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "reason:     %s\n", l.Reason)
	if l.Derived() {
		fmt.Fprintf(w, "event:      derived event emitted to %s for source seq %s, refused by JetStream\n", l.EmitSubject, orDash(l.SourceSeq))
	} else {
		fmt.Fprintf(w, "event:      source seq %s on %s\n", orDash(l.SourceSeq), orDashS(l.SourceSubject))
	}
	switch {
	case l.Truncated:
		fmt.Fprintf(w, "redrive:    refused: the payload was truncated from %d bytes\n", l.OriginalSize)
	case l.HeadersDropped > 0:
		fmt.Fprintf(w, "redrive:    refused: %d bytes of source headers were left out\n", l.HeadersDropped)
	case l.Subject() == "":
		fmt.Fprintf(w, "redrive:    refused: no original subject\n")
	default:
		fmt.Fprintf(w, "redrive:    to %s as %s\n", l.Subject(), dlq.RedriveID(d.pipeline, l.Seq))
	}
	fmt.Fprintln(w, "headers:")
	for _, k := range slices.Sorted(maps.Keys(l.Header)) {
		for _, v := range l.Header[k] {
			fmt.Fprintf(w, "  %s: %s\n", k, v)
		}
	}
	switch {
	case l.Truncated:
		fmt.Fprintf(w, "payload: %d bytes, truncated from %d bytes", len(l.Data), l.OriginalSize)
	default:
		fmt.Fprintf(w, "payload: %d bytes", len(l.Data))
	}
	if len(l.Data) == 0 {
		fmt.Fprintln(w)
		return nil
	}
	data := l.Data
	if text {
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, ", not valid UTF-8: shown as base64")
		data = []byte(base64.StdEncoding.EncodeToString(l.Data))
	}
	w.Write(data)
	if data[len(data)-1] != '\n' {
		fmt.Fprintln(w)
	}
	return nil
}

func (d dlqRun) redrive(cmd *cobra.Command, conn *streams.Conn, filter dlq.Filter) error {
	w := d.g.stdout
	keep := "deleted"
	if d.f.keep {
		keep = "kept"
	}
	progress := func(r dlq.Result) {
		l := r.Letter
		switch r.Action {
		case dlq.WouldRedrive:
			to := "stream " + r.Stream
			if r.Stream == "" {
				to = "no stream captures it: the publish would fail"
			}
			then := "would delete it"
			if d.f.keep {
				then = "would keep it"
			}
			fmt.Fprintf(w, "would redrive %d -> %s (%s): %d bytes, headers %s; %s\n", l.Seq, r.Subject, to, len(l.Data), headerList(r.Header), then)
		case dlq.Redriven, dlq.Duplicate:
			stored := fmt.Sprintf("%s seq %d", r.Stream, r.StreamSeq)
			if r.Action == dlq.Duplicate {
				stored = fmt.Sprintf("already in %s at seq %d, from an earlier redrive", r.Stream, r.StreamSeq)
			}
			outcome := keep
			if !d.f.keep && !r.Deleted {
				outcome = fmt.Sprintf("NOT deleted: %v", r.Err)
			}
			fmt.Fprintf(w, "redriven %d -> %s (%s), %s\n", l.Seq, r.Subject, stored, outcome)
		case dlq.Skipped:
			fmt.Fprintf(w, "skipped %d: %s, kept\n", l.Seq, skipReason(l, r.Err))
		case dlq.Failed:
			fmt.Fprintf(w, "failed %d -> %s: %v, kept\n", l.Seq, r.Subject, r.Err)
		}
	}
	rep, err := dlq.Redrive(cmd.Context(), conn.JS, d.pipeline, filter, dlq.RedriveOptions{DryRun: d.f.dryRun, Keep: d.f.keep, Progress: progress})
	if rep.Selected == 0 {
		if err == nil {
			d.none()
		}
		return err
	}
	var skipped []string
	for _, why := range []error{dlq.ErrTruncated, dlq.ErrHeadersDropped, dlq.ErrNoSubject} {
		if n := rep.Skipped[why]; n > 0 {
			skipped = append(skipped, fmt.Sprintf("%s: %d", why, n))
		}
	}
	skip := strconv.Itoa(rep.SkippedTotal())
	if len(skipped) > 0 {
		skip += " (" + strings.Join(skipped, ", ") + ")"
	}
	if rep.DryRun {
		fmt.Fprintf(w, "dry run: would redrive %d of %d dead letters, skip %s, delete %d; nothing changed\n", rep.Redriven, rep.Selected, skip, rep.Deleted)
		return err
	}
	dup := ""
	if rep.Duplicates > 0 {
		dup = fmt.Sprintf(" (%d already there)", rep.Duplicates)
	}
	fmt.Fprintf(w, "redriven %d of %d dead letters%s, skipped %s, failed %d, deleted %d", rep.Redriven, rep.Selected, dup, skip, rep.Failed, rep.Deleted)
	if rep.DeleteFailed > 0 {
		fmt.Fprintf(w, ", not deleted %d", rep.DeleteFailed)
	}
	fmt.Fprintln(w)
	return err
}

// skipReason says why a dead letter was skipped.
func skipReason(l dlq.Letter, why error) string {
	switch {
	case errors.Is(why, dlq.ErrTruncated):
		return fmt.Sprintf("%v (%d of %d bytes kept)", why, len(l.Data), l.OriginalSize)
	case errors.Is(why, dlq.ErrHeadersDropped):
		return fmt.Sprintf("%v (%d bytes)", why, l.HeadersDropped)
	}
	return why.Error()
}

// headerList names the headers of h, sorted, with the message id's value.
func headerList(h map[string][]string) string {
	var names []string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if k == jetstream.MsgIDHeader {
			k += "=" + h[k][0]
		}
		names = append(names, k)
	}
	return strings.Join(names, ", ")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}

func orDashS(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
