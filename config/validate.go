package config

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetfold/jetfold/config/diag"
)

// nameRe is what stream and pipeline names may hold.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// nameHint says what a stream or pipeline name may hold.
const nameHint = "use only letters, digits, _ and -"

// Validate checks the structure of the configuration: names, references from pipelines to
// streams, enumerations, ranges and the shape of operator items. It does not look inside
// expressions or operator configurations. It returns nil, or every problem found joined with
// [errors.Join] in file order, each a [*diag.Error] wrapping [diag.ErrInvalid].
//
// Validate expects defaults to be applied: [Load] does both; a configuration built in code
// should call [Config.SetDefaults] first.
func (c *Config) Validate() error {
	return diag.JoinSorted(c.validate())
}

// validator collects the problems of one configuration.
type validator struct {
	c    *Config
	errs []*diag.Error
}

// add records a problem at path.
func (v *validator) add(path, hint, format string, args ...any) {
	e := v.c.Errorf(path, format, args...)
	e.Hint = hint
	v.errs = append(v.errs, e)
}

// oneOf checks that the value at path is one of valid.
func (v *validator) oneOf(path, what, val string, valid ...string) {
	if slices.Contains(valid, val) {
		return
	}
	hint := "use " + orList(valid)
	if m, ok := diag.Suggest(val, valid); ok {
		hint = "did you mean " + m + "?"
	}
	v.add(path, hint, "invalid %s %q in %s", what, val, diag.DisplayPath(diag.ParentPath(path)))
}

// name checks the name of the stream or pipeline at base: present, well formed and not
// taken already (seen maps each name to the path of its first use, and is updated).
func (v *validator) name(base, what, verb, name string, seen map[string]string) {
	switch first, dup := seen[name]; {
	case name == "":
		v.add(base+".name", "", "%s.name is required", diag.DisplayPath(base))
	case !nameRe.MatchString(name):
		v.add(base+".name", nameHint, "invalid %s name %q", what, name)
	case dup:
		v.add(base+".name", "", "duplicate %s name %q (first %s at %s)", what, name, verb, v.c.firstAt(first))
	default:
		seen[name] = base + ".name"
	}
}

// firstAt describes where the first of two duplicates is: "line 12", or its path.
func (c *Config) firstAt(path string) string {
	if p := c.Pos(path); p.Line > 0 {
		return "line " + strconv.Itoa(p.Line)
	}
	return diag.DisplayPath(path)
}

// validate returns the problems that [Config.Validate] reports, unsorted.
func (c *Config) validate() []*diag.Error {
	v := &validator{c: c}
	switch si := c.NATS.Embedded.SyncInterval; si {
	case "", "always":
	default:
		if d, err := time.ParseDuration(si); err != nil || d <= 0 {
			v.add("nats.embedded.sync_interval", `use "always" or a positive duration such as 1m`,
				"invalid sync_interval %q in nats.embedded", si)
		}
	}
	v.auth()
	if r := c.NATS.KVReplicas; r < 0 || r > 5 {
		v.add("nats.kv_replicas", "1 to 5: as many as the NATS cluster has servers, at most", "nats.kv_replicas must be 1 to 5, got %d", r)
	}
	if c.Processor.LeaseTTL < time.Second {
		v.add("processor.lease_ttl", "such as 5s", "processor.lease_ttl must be at least 1s, got %s", c.Processor.LeaseTTL)
	}

	var declared []string
	streamAt := map[string]string{}
	for i, s := range c.Streams {
		base := "streams." + strconv.Itoa(i)
		if s.Name != "" && !slices.Contains(declared, s.Name) {
			declared = append(declared, s.Name)
		}
		v.name(base, "stream", "declared", s.Name, streamAt)
		if len(s.Subjects) == 0 {
			v.add(base+".subjects", `such as subjects: ["shop.>"]`, "%s.subjects must list at least one subject", diag.DisplayPath(base))
		}
		for j, subj := range s.Subjects {
			if subj == "" || strings.ContainsAny(subj, " \t\r\n") {
				v.add(base+".subjects."+strconv.Itoa(j), "a subject is not empty and holds no spaces",
					"invalid subject %q in %s.subjects", subj, diag.DisplayPath(base))
			}
		}
		v.oneOf(base+".storage", "storage", s.Storage, "file", "memory")
		if s.Replicas < 1 || s.Replicas > 5 {
			v.add(base+".replicas", "", "%s.replicas must be between 1 and 5, got %d", diag.DisplayPath(base), s.Replicas)
		}
		if s.DuplicateWindow < 0 {
			v.add(base+".duplicate_window", "", "%s.duplicate_window must not be negative, got %s", diag.DisplayPath(base), s.DuplicateWindow)
		}
		if s.MaxAge < 0 {
			v.add(base+".max_age", "", "%s.max_age must not be negative, got %s", diag.DisplayPath(base), s.MaxAge)
		}
		if tr := s.SubjectTransform; (tr.Src == "") != (tr.Dest == "") {
			v.add(base+".subject_transform", `such as {src: "shop.*", dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"}`,
				"%s.subject_transform needs both src and dest", diag.DisplayPath(base))
		}
	}

	pipelineAt := map[string]string{}
	for i, p := range c.Pipelines {
		base := "pipelines." + strconv.Itoa(i)
		v.name(base, "pipeline", "defined", p.Name, pipelineAt)
		v.source(base+".source", p.Source, declared)
		v.oneOf(base+".decode", "decode", p.Decode, "json", "cloudevents", "raw")
		v.oneOf(base+".on_error", "on_error", p.OnError, "dead_letter", "skip", "stop")
		if strings.TrimSpace(p.Key) == "" {
			v.add(base+".key", "an expression giving the entity key, such as event.user_id",
				"%s.key is required", diag.DisplayPath(base))
		}
		if p.Batch.Size < 1 || p.Batch.Size > 100000 {
			v.add(base+".batch.size", "", "%s.batch.size must be between 1 and 100000, got %d", diag.DisplayPath(base), p.Batch.Size)
		}
		if p.Batch.MaxWait <= 0 {
			v.add(base+".batch.max_wait", durationHint, "%s.batch.max_wait must be positive, got %s", diag.DisplayPath(base), p.Batch.MaxWait)
		}
		if cu := p.Batch.CatchUp; cu.Size < p.Batch.Size || cu.Size > MaxCatchUpSize {
			v.add(base+".batch.catch_up.size", "",
				"%s.batch.catch_up.size must be between batch.size (%d) and 10000000, got %d", diag.DisplayPath(base), p.Batch.Size, cu.Size)
		}
		if cu := p.Batch.CatchUp; cu.MaxWait < p.Batch.MaxWait {
			v.add(base+".batch.catch_up.max_wait", durationHint,
				"%s.batch.catch_up.max_wait must be at least batch.max_wait (%s), got %s", diag.DisplayPath(base), p.Batch.MaxWait, cu.MaxWait)
		}
		if p.Cache.MaxKeys < 1 {
			v.add(base+".cache.max_keys", "", "%s.cache.max_keys must be at least 1, got %d", diag.DisplayPath(base), p.Cache.MaxKeys)
		}
		if p.Partitions < 1 || p.Partitions > MaxPartitions {
			v.add(base+".partitions", "", "%s.partitions must be between 1 and %d, got %d", diag.DisplayPath(base), MaxPartitions, p.Partitions)
		}
		v.partitionedBySubject(base, p, c.Streams)
		for j, op := range p.Operators {
			opPath := base + ".operators." + strconv.Itoa(j)
			if _, rekey := op["key"]; rekey && len(op) == 1 && p.Partitions > 1 {
				v.add(opPath+".key", "partition by the key the projections use: set it as the pipeline's key",
					"%s: the key operator re-keys events, which a pipeline with %d partitions cannot do (a key would be written by two partitions)",
					diag.DisplayPath(opPath), p.Partitions)
			}
			switch {
			case op == nil: // a list item with nothing, not even {}
				v.errs = append(v.errs, c.operatorShapeError(opPath, nil))
			case len(op) == 1:
			case len(op) == 0:
				v.add(opPath, `write "- name: config", such as "- filter: event.amount > 0"`,
					"%s is empty: an operator is a map with one key, the operator name", diag.DisplayPath(opPath))
			default:
				v.add(opPath, "put each operator in its own list item",
					"%s has %d keys (%s): an operator is a map with exactly one key, the operator name",
					diag.DisplayPath(opPath), len(op), strings.Join(sortedKeys(op), ", "))
			}
		}
	}
	return v.errs
}

// partitionedBySubject checks source.partitioned_by_subject of pipeline p at base: it needs
// partitions, at most one source subject whose first token is a wildcard (the partition's
// number takes its place), and a declared stream whose subject transform, if the file gives
// one, partitions into as many partitions. A stream without one in the file is checked at
// start.
func (v *validator) partitionedBySubject(base string, p Pipeline, decl []Stream) {
	if !p.Source.PartitionedBySubject {
		return
	}
	path := base + ".source.partitioned_by_subject"
	where := diag.DisplayPath(path)
	if p.Partitions < 2 {
		v.add(path, "set partitions: N, as the stream's {{partition(N,...)}}", "%s needs partitions of 2 or more, got %d", where, p.Partitions)
	}
	switch subs := p.Source.Subjects; {
	case len(subs) > 1:
		v.add(base+".source.subjects", "list one subject, such as \"*.shop.>\"",
			"%s reads one subject filter per partition: %s.subjects lists %d", where, diag.DisplayPath(base+".source"), len(subs))
	case len(subs) == 1:
		if first, _, _ := strings.Cut(subs[0], "."); first != "*" && first != ">" {
			v.add(base+".source.subjects.0", "the stored subjects start with the partition: such as \"*.shop.>\"",
				"%s: the subject %q must start with a wildcard, which each partition replaces by its number", where, subs[0])
		}
	}
	for _, s := range decl {
		if s.Name != p.Source.Stream || s.SubjectTransform.Dest == "" {
			continue
		}
		n, _, ok := PartitionToken(s.SubjectTransform.Dest)
		if !ok || n != p.Partitions {
			v.add(path, fmt.Sprintf("give stream %s subject_transform.dest: \"{{partition(%d,<token>)}}.<rest>\"", s.Name, p.Partitions),
				"%s: stream %s does not store its messages under %d partitions (subject_transform.dest %q)", where, s.Name, p.Partitions, s.SubjectTransform.Dest)
		}
	}
}

// source checks a pipeline's source at path against the declared streams.
func (v *validator) source(path string, s Source, declared []string) {
	where := diag.DisplayPath(path)
	switch {
	case s.Stream == "":
		hint := "declare the stream under streams: and name it here"
		if len(declared) > 0 {
			hint = "declared streams: " + strings.Join(declared, ", ")
		}
		v.add(path+".stream", hint, "%s.stream is required", where)
	case !slices.Contains(declared, s.Stream):
		hint := "declare it under streams:"
		if len(declared) > 0 {
			hint = "declared streams: " + strings.Join(declared, ", ")
			if m, ok := diag.Suggest(s.Stream, declared); ok {
				hint = "did you mean " + m + "? " + hint
			}
		}
		v.add(path+".stream", hint, "unknown stream %q in %s", s.Stream, where)
	}
	for j, subj := range s.Subjects {
		if subj == "" || strings.ContainsAny(subj, " \t\r\n") {
			v.add(path+".subjects."+strconv.Itoa(j), "a subject is not empty and holds no spaces",
				"invalid subject %q in %s.subjects", subj, where)
		}
	}
	if _, reason := parseStart(s.Start); reason != "" {
		v.add(path+".start", "use all, new, seq:<n> or time:<RFC3339>", "invalid start %q in %s: %s", s.Start, where, reason)
	}
	v.oneOf(path+".stop", "stop", s.Stop, "follow", "end")
}

// Kinds of [StartPos].
const (
	StartAll  = "all"  // every event in the stream
	StartNew  = "new"  // only events published after the consumer is created
	StartSeq  = "seq"  // from stream sequence Seq on
	StartTime = "time" // from the first event stored at or after Time
)

// StartPos is a parsed [Source.Start].
type StartPos struct {
	// Kind is [StartAll], [StartNew], [StartSeq] or [StartTime].
	Kind string
	// Seq is the first stream sequence to read, for [StartSeq]; at least 1.
	Seq uint64
	// Time is the start time, for [StartTime].
	Time time.Time
}

// StartPosition parses s.Start: "all" (also ""), "new", "seq:<n>" with n a positive integer,
// or "time:<t>" with t an RFC3339 time, with or without fractions of a second. The error, which
// wraps [diag.ErrInvalid], says what is wrong.
func (s Source) StartPosition() (StartPos, error) {
	p, reason := parseStart(s.Start)
	if reason != "" {
		return StartPos{}, fmt.Errorf("%w: start %q: %s", diag.ErrInvalid, s.Start, reason)
	}
	return p, nil
}

// parseStart parses a start position; reason is "" when it is valid, else what is wrong.
func parseStart(s string) (p StartPos, reason string) {
	kind, arg, hasArg := strings.Cut(s, ":")
	switch {
	case s == "" || s == StartAll:
		return StartPos{Kind: StartAll}, ""
	case s == StartNew:
		return StartPos{Kind: StartNew}, ""
	case hasArg && kind == StartSeq:
		n, err := strconv.ParseUint(arg, 10, 64)
		if err != nil || n == 0 {
			return StartPos{}, fmt.Sprintf("sequence %q is not a positive integer", arg)
		}
		return StartPos{Kind: StartSeq, Seq: n}, ""
	case hasArg && kind == StartTime:
		t, err := time.Parse(time.RFC3339Nano, arg)
		if err != nil {
			return StartPos{}, fmt.Sprintf("%q is not an RFC3339 time such as 2024-05-01T12:00:00Z", arg)
		}
		return StartPos{Kind: StartTime, Time: t}, ""
	}
	return StartPos{}, "not a start position"
}

// orList writes "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// auth checks that nats sets one authentication method at most, a password with its user and
// both halves of a client certificate. It never quotes a value: it may be a secret.
func (v *validator) auth() {
	n := v.c.NATS
	var set []string
	for _, f := range []struct {
		path string
		on   bool
	}{
		{"nats.creds_file", n.CredsFile != ""}, {"nats.nkey_file", n.NKeyFile != ""},
		{"nats.user", n.User != ""}, {"nats.token", n.Token != ""},
	} {
		if f.on {
			set = append(set, f.path)
		}
	}
	for _, p := range set[min(1, len(set)):] {
		v.add(p, "set one of creds_file, nkey_file, user (with password) or token",
			"%s is set with %s: one authentication method at a time", diag.DisplayPath(p), diag.DisplayPath(set[0]))
	}
	if n.Password != "" && n.User == "" {
		v.add("nats.password", "set nats.user too", "nats.password is set without nats.user")
	}
	switch {
	case n.TLS.CertFile != "" && n.TLS.KeyFile == "":
		v.add("nats.tls.cert_file", "set nats.tls.key_file, the key of the certificate", "nats.tls.cert_file is set without nats.tls.key_file")
	case n.TLS.KeyFile != "" && n.TLS.CertFile == "":
		v.add("nats.tls.key_file", "set nats.tls.cert_file, the certificate of the key", "nats.tls.key_file is set without nats.tls.cert_file")
	}
}
