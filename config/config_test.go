package config_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
)

// validYAML is the example of the design document, trimmed.
const validYAML = `nats:
  url: ""
  embedded: {store_dir: ./data/nats, listen: 127.0.0.1:4222}
http: {listen: 127.0.0.1:8080}
streams:
  - {name: SHOP, subjects: ["shop.cart.>", "shop.order.>"], storage: file, replicas: 1}
  - {name: SHOP_DERIVED, subjects: ["shop.derived.>"], storage: file, duplicate_window: 10m}
pipelines:
  - name: carts
    source: {stream: SHOP, start: all, stop: follow}
    key: event.user_id
    operators:
      - filter: event.type != "heartbeat"
      - fold:
          projection: carts
          initial: {items: 0}
          on:
            product-added-to-cart: {items: state.items + 1}
`

// writeFile writes content to a file in a new temporary directory and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jetfold.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// load writes content and loads it with the given environment (never the process's).
func load(t *testing.T, content string, env ...string) (*config.Config, string, error) {
	t.Helper()
	path := writeFile(t, content)
	if env == nil {
		env = []string{}
	}
	c, err := config.Load(path, config.LoadOptions{Environ: env})
	return c, path, err
}

// errorLines splits a joined error into its lines.
func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

// stream and pipeline lines shared by the broken files below.
const (
	shopStream = "streams:\n  - {name: SHOP, subjects: [\"shop.>\"]}\n"
	carts      = "  - name: carts\n    source: {stream: SHOP}\n    key: event.user_id\n"
)

func TestJoinReportsOnePerPlaceInFileOrder(t *testing.T) {
	c, path, err := load(t, "pipelines:\n  - name: \"a b\"\n    key: x\n    source: {stream: S}\n")
	if c == nil {
		t.Fatalf("a file that decodes comes back with its errors: %v", err)
	}
	extra := c.Errorf("pipelines.0.key", "expression x: unknown name x")
	again := c.Errorf("pipelines.0.name", "a second message at the same place")
	joined := diag.Join(extra, err, again, nil)
	lines := strings.Split(joined.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%v", len(lines), joined)
	}
	for i, want := range []string{path + ":2:11: invalid pipeline name", path + ":3:10: expression x", path + ":4:22: unknown stream"} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		// want lists lines that err.Error() must hold, without the leading "file:".
		want []string
		// count, when not zero, is the exact number of errors.
		count int
	}{
		{
			name:  "unknown top-level field",
			yaml:  "pipeline: []\n" + shopStream,
			want:  []string{`1:1: unknown field "pipeline" at the top level (hint: did you mean pipelines?)`},
			count: 1,
		},
		{
			name: "unknown field in pipeline",
			yaml: shopStream + "pipelines:\n" + carts + "    bach: {size: 10}\n",
			want: []string{`7:5: unknown field "bach" in pipelines[0] (hint: did you mean batch?)`},
		},
		{
			name: "unknown field in source",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP, from: all}\n    key: k\n",
			want: []string{`5:28: unknown field "from" in pipelines[0].source ` +
				`(hint: valid fields: stream, subjects, start, stop, partitioned_by_subject)`},
			count: 1,
		},
		{
			name:  "wrong type",
			yaml:  shopStream + "pipelines:\n" + carts + "    batch: {size: \"abc\"}\n",
			want:  []string{`7:19: invalid integer "abc" for pipelines[0].batch.size`},
			count: 1,
		},
		{
			name: "map where a string belongs",
			yaml: shopStream + "pipelines:\n" + carts + "    decode: {json: true}\n",
			want: []string{`7:13: invalid value for pipelines[0].decode: expected a string, got a map`},
		},
		{
			name: "bad duration",
			yaml: shopStream + "pipelines:\n" + carts + "    batch:\n      max_wait: 5 parsecs\n",
			want: []string{`8:17: invalid duration "5 parsecs" for pipelines[0].batch.max_wait ` +
				`(hint: use a number with a unit (ns, us, ms, s, m, h), such as 200ms, 30s or 1h30m)`},
			count: 1,
		},
		{
			name: "duration without unit",
			yaml: shopStream + "pipelines:\n" + carts + "    batch: {max_wait: 200}\n",
			want: []string{`7:23: invalid duration 200 for pipelines[0].batch.max_wait ` +
				`(hint: use a number with a unit (ns, us, ms, s, m, h), such as 200ms, 30s or 1h30m)`},
		},
		{
			name: "unknown stream",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHPO}\n    key: k\n",
			want: []string{`5:22: unknown stream "SHPO" in pipelines[0].source ` +
				`(hint: did you mean SHOP? declared streams: SHOP)`},
			count: 1,
		},
		{
			name: "duplicate pipeline name",
			yaml: shopStream + "pipelines:\n" + carts + carts,
			want: []string{`7:11: duplicate pipeline name "carts" (first defined at line 4)`},
		},
		{
			name: "bad start sequence",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP, start: seq:x}\n    key: k\n",
			want: []string{`5:35: invalid start "seq:x" in pipelines[0].source: sequence "x" is not a positive integer ` +
				`(hint: use all, new, seq:<n> or time:<RFC3339>)`},
		},
		{
			name: "operator with two keys",
			yaml: shopStream + "pipelines:\n" + carts + "    operators:\n      - filter: x > 1\n        set: {y: 1}\n",
			want: []string{`8:9: pipelines[0].operators[0] has 2 keys (filter, set): an operator is a map with ` +
				`exactly one key, the operator name (hint: put each operator in its own list item)`},
			count: 1,
		},
		{
			name: "operator that is not a map",
			yaml: shopStream + "pipelines:\n" + carts + "    operators:\n      - filter\n",
			want: []string{`8:9: invalid operator at pipelines[0].operators[0]: expected a map with one key, ` +
				`the operator name, got a string (hint: write "- name: config", such as "- filter: event.amount > 0")`},
			count: 1,
		},
		{
			name:  "yaml syntax error",
			yaml:  "nats:\n  url: x\n   bad: [\n",
			want:  []string{`3:4: invalid YAML: mapping values are not allowed in this context`},
			count: 1,
		},
		{
			name:  "unclosed flow sequence",
			yaml:  "nats: {url: x}\nb: [1, 2\n",
			want:  []string{`2:4: invalid YAML: this [ is not closed (did not find expected ',' or ']') (hint: close it on the same line, or, inside {...} or [...], quote an expression that holds , ? : # [ ] { }, such as {n: '(state.n ?? 0) + 1'})`},
			count: 1,
		},
		{
			name:  "unclosed flow sequence in a pipeline",
			yaml:  shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP}\n    key: [event.user_id\n    time: event.ts\n",
			want:  []string{`6:10: invalid YAML: this [ is not closed (did not find expected ',' or ']') (hint: close it on the same line, or, inside {...} or [...], quote an expression that holds , ? : # [ ] { }, such as {n: '(state.n ?? 0) + 1'})`},
			count: 1,
		},
		{
			name:  "unclosed flow map",
			yaml:  "nats: {url: x\n",
			want:  []string{`1:7: invalid YAML: this { is not closed (did not find expected ',' or '}') (hint: close it on the same line, or, inside {...} or [...], quote an expression that holds , ? : # [ ] { }, such as {n: '(state.n ?? 0) + 1'})`},
			count: 1,
		},
		{
			name:  "bad indentation",
			yaml:  "nats:\n  url: x\n embedded: y\n",
			want:  []string{`3:2: invalid YAML: did not find expected key`},
			count: 1,
		},
		{
			name: "duplicate key",
			yaml: "nats:\n  url: a\n  url: b\n",
			want: []string{`3:3: invalid YAML: mapping key "url" already defined at line 2`},
		},
		{
			name: "top level is a list",
			yaml: "- a\n",
			want: []string{`1:1: the configuration must be a map, got a list ` +
				`(hint: start with a section such as nats:, streams: or pipelines:)`},
		},
		{
			name: "missing name and key",
			yaml: shopStream + "pipelines:\n  - source: {stream: SHOP}\n",
			want: []string{
				`4:5: pipelines[0].name is required`,
				`4:5: pipelines[0].key is required (hint: an expression giving the entity key, such as event.user_id)`,
			},
			count: 2,
		},
		{
			name: "bad stream declarations",
			yaml: "streams:\n  - {name: \"a b\", subjects: [x], storage: disk}\n  - {name: S, subjects: []}\n" +
				"  - {name: S, subjects: [y], replicas: 7}\n",
			want: []string{
				`2:12: invalid stream name "a b" (hint: use only letters, digits, _ and -)`,
				`2:43: invalid storage "disk" in streams[0] (hint: use file or memory)`,
				`3:25: streams[1].subjects must list at least one subject (hint: such as subjects: ["shop.>"])`,
				`4:12: duplicate stream name "S" (first declared at line 3)`,
				`4:40: streams[2].replicas must be between 1 and 5, got 7`,
			},
			count: 5,
		},
		{
			name: "out of range and enumerations",
			yaml: shopStream + "pipelines:\n" + carts +
				"    decode: xml\n    on_error: skp\n    batch: {size: 0, max_wait: 0s}\n    cache: {max_keys: 0}\n",
			want: []string{
				`7:13: invalid decode "xml" in pipelines[0] (hint: use json, cloudevents or raw)`,
				`8:15: invalid on_error "skp" in pipelines[0] (hint: did you mean skip?)`,
				`9:19: pipelines[0].batch.size must be between 1 and 100000, got 0`,
				`9:32: pipelines[0].batch.max_wait must be positive, got 0s ` +
					`(hint: use a number with a unit (ns, us, ms, s, m, h), such as 200ms, 30s or 1h30m)`,
				`10:23: pipelines[0].cache.max_keys must be at least 1, got 0`,
			},
			count: 5,
		},
		{
			name: "catch-up bounds below the batch's",
			yaml: shopStream + "pipelines:\n" + carts +
				"    batch: {size: 1000, max_wait: 1s, catch_up: {size: 10, max_wait: 10ms}}\n",
			want: []string{
				`7:56: pipelines[0].batch.catch_up.size must be between batch.size (1000) and 10000000, got 10`,
				`7:70: pipelines[0].batch.catch_up.max_wait must be at least batch.max_wait (1s), got 10ms ` +
					`(hint: use a number with a unit (ns, us, ms, s, m, h), such as 200ms, 30s or 1h30m)`,
			},
			count: 2,
		},
		{
			name: "partitions out of range",
			yaml: shopStream + "pipelines:\n" + carts + "    partitions: 300\n",
			want: []string{`7:17: pipelines[0].partitions must be between 1 and 256, got 300`},
		},
		{
			name: "partitioned by subject without partitions",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP, partitioned_by_subject: true}\n    key: event.user_id\n",
			want: []string{`5:52: pipelines[0].source.partitioned_by_subject needs partitions of 2 or more, got 1 (hint: set partitions: N, as the stream's {{partition(N,...)}})`},
		},
		{
			name: "partitioned by subject with two subjects",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP, partitioned_by_subject: true, subjects: [\"*.a\", \"*.b\"]}\n    key: event.user_id\n    partitions: 4\n",
			want: []string{`5:68: pipelines[0].source.partitioned_by_subject reads one subject filter per partition: pipelines[0].source.subjects lists 2 (hint: list one subject, such as "*.shop.>")`},
		},
		{
			name: "partitioned by subject with a subject not starting with a wildcard",
			yaml: shopStream + "pipelines:\n  - name: carts\n    source: {stream: SHOP, partitioned_by_subject: true, subjects: [\"shop.>\"]}\n    key: event.user_id\n    partitions: 4\n",
			want: []string{`5:69: pipelines[0].source.partitioned_by_subject: the subject "shop.>" must start with a wildcard, which each partition replaces by its number (hint: the stored subjects start with the partition: such as "*.shop.>")`},
		},
		{
			name: "partitioned by subject on a stream of another count",
			yaml: "streams:\n  - {name: SHOP, subjects: [\"shop.*\"], subject_transform: {src: \"shop.*\", dest: \"{{partition(3,1)}}.shop.{{wildcard(1)}}\"}}\n" +
				"pipelines:\n  - name: carts\n    source: {stream: SHOP, partitioned_by_subject: true}\n    key: event.user_id\n    partitions: 4\n",
			want: []string{`5:52: pipelines[0].source.partitioned_by_subject: stream SHOP does not store its messages under 4 partitions (subject_transform.dest "{{partition(3,1)}}.shop.{{wildcard(1)}}") (hint: give stream SHOP subject_transform.dest: "{{partition(4,<token>)}}.<rest>")`},
		},
		{
			name: "subject transform without dest",
			yaml: "streams:\n  - {name: SHOP, subjects: [\"shop.*\"], subject_transform: {src: \"shop.*\"}}\n" + "pipelines:\n" + carts,
			want: []string{`2:59: streams[0].subject_transform needs both src and dest (hint: such as {src: "shop.*", dest: "{{partition(4,1)}}.shop.{{wildcard(1)}}"})`},
		},
		{
			name: "re-key with partitions",
			yaml: shopStream + "pipelines:\n" + carts + "    partitions: 4\n    operators:\n      - key: event.order_id\n",
			want: []string{`9:14: pipelines[0].operators[0]: the key operator re-keys events, which a pipeline with 4 partitions ` +
				`cannot do (a key would be written by two partitions) (hint: partition by the key the projections use: set it as the pipeline's key)`},
		},
		{
			name: "operators not a list",
			yaml: shopStream + "pipelines:\n" + carts + "    operators: {filter: x}\n",
			want: []string{`7:16: invalid value for pipelines[0].operators: expected a list, got a map`},
		},
		{
			name: "sync interval",
			yaml: "nats: {embedded: {sync_interval: -1s}}\n",
			want: []string{`1:34: invalid sync_interval "-1s" in nats.embedded ` +
				`(hint: use "always" or a positive duration such as 1m)`},
		},
		{
			name:  "a key named -",
			yaml:  "-: x\n" + shopStream,
			want:  []string{`1:1: unknown field "-" at the top level (hint: valid fields: nats, http, processor, streams, pipelines)`},
			count: 1,
		},
		{
			name: "empty operator item",
			yaml: shopStream + "pipelines:\n" + carts + "    operators:\n      -\n      - [{filter: x}]\n",
			want: []string{
				`8:8: invalid operator at pipelines[0].operators[0]: expected a map with one key, ` +
					`the operator name, got an empty value (hint: write "- name: config", such as "- filter: event.amount > 0")`,
				`9:9: invalid operator at pipelines[0].operators[1]: expected a map with one key, ` +
					`the operator name, got a list (hint: write "- name: config", such as "- filter: event.amount > 0")`,
			},
			count: 2,
		},
		{
			name:  "streams not a list",
			yaml:  "streams: {name: SHOP, subjects: [x]}\n",
			want:  []string{`1:10: invalid value for streams: expected a list, got a map`},
			count: 1,
		},
		{
			name: "three problems reported together",
			yaml: shopStream + "pipelines:\n" +
				"  - name: carts\n    source: {stream: NOPE, start: seq:x}\n    key: k\n    bach: {}\n",
			want: []string{
				`5:22: unknown stream "NOPE" in pipelines[0].source (hint: declared streams: SHOP)`,
				`5:35: invalid start "seq:x" in pipelines[0].source: sequence "x" is not a positive integer ` +
					`(hint: use all, new, seq:<n> or time:<RFC3339>)`,
				`7:5: unknown field "bach" in pipelines[0] (hint: did you mean batch?)`,
			},
			count: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, path, err := load(t, tt.yaml)
			if err == nil {
				t.Fatalf("Load succeeded, want errors")
			}
			if c != nil && c.File != path {
				t.Errorf("Load returned a Config for another file with an error")
			}
			if !errors.Is(err, diag.ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) = false for %v", err)
			}
			var ce *diag.Error
			if !errors.As(err, &ce) || ce.Pos.File != path || ce.Pos.Line < 1 {
				t.Errorf("errors.As(*Error) = %+v, want one in %s", ce, path)
			}
			lines := errorLines(err)
			for _, w := range tt.want {
				if !slices.Contains(lines, path+":"+w) {
					t.Errorf("missing error line\n%s:%s\ngot:\n%s", path, w, err)
				}
			}
			if tt.count != 0 && len(lines) != tt.count {
				t.Errorf("got %d errors, want %d:\n%s", len(lines), tt.count, err)
			}
		})
	}
}

func TestLoadReadError(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"), config.LoadOptions{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
	if errors.Is(err, diag.ErrInvalid) {
		t.Errorf("a read error wraps ErrInvalid: %v", err)
	}
}

func TestLoadValid(t *testing.T) {
	c, path, err := load(t, validYAML)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.File != path {
		t.Errorf("File = %q, want %q", c.File, path)
	}
	if len(c.IgnoredEnv) != 0 {
		t.Errorf("IgnoredEnv = %v", c.IgnoredEnv)
	}
	e := c.NATS.Embedded
	if e.StoreDir != "./data/nats" || e.Listen != "127.0.0.1:4222" || e.SyncInterval != "" {
		t.Errorf("embedded = %+v", e)
	}
	if c.HTTP.Listen != "127.0.0.1:8080" {
		t.Errorf("http.listen = %q", c.HTTP.Listen)
	}
	if len(c.Streams) != 2 {
		t.Fatalf("streams = %+v", c.Streams)
	}
	s := c.Streams[1]
	if s.Name != "SHOP_DERIVED" || s.Storage != "file" || s.Replicas != 1 || s.DuplicateWindow != 10*time.Minute ||
		!slices.Equal(s.Subjects, []string{"shop.derived.>"}) {
		t.Errorf("streams[1] = %+v", s)
	}
	if len(c.Pipelines) != 1 {
		t.Fatalf("pipelines = %+v", c.Pipelines)
	}
	p := c.Pipelines[0]
	want := config.Pipeline{
		Name:    "carts",
		Source:  config.Source{Stream: "SHOP", Start: "all", Stop: "follow"},
		Decode:  "json",
		Type:    "event.type",
		Key:     "event.user_id",
		OnError: "dead_letter",
		Batch:   config.Batch{Size: 50000, MaxWait: 200 * time.Millisecond, CatchUp: config.CatchUp{Size: 500000, MaxWait: 2 * time.Second}},
		Cache:   config.Cache{MaxKeys: 100000},
	}
	ops := p.Operators
	p.Operators = nil
	if !equalPipeline(p, want) {
		t.Errorf("pipeline = %+v\nwant       %+v", p, want)
	}
	if len(ops) != 2 || ops[0]["filter"] != `event.type != "heartbeat"` {
		t.Fatalf("operators = %v", ops)
	}
	fold, ok := ops[1]["fold"].(map[string]any)
	if !ok || fold["projection"] != "carts" {
		t.Errorf("fold = %#v", ops[1]["fold"])
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Load: %v", err)
	}
}

// equalPipeline compares pipelines without operators.
func equalPipeline(a, b config.Pipeline) bool {
	return a.Name == b.Name && a.Source.Stream == b.Source.Stream && slices.Equal(a.Source.Subjects, b.Source.Subjects) &&
		a.Source.Start == b.Source.Start && a.Source.Stop == b.Source.Stop && a.Decode == b.Decode &&
		a.Type == b.Type && a.Key == b.Key && a.Time == b.Time && a.OnError == b.OnError &&
		a.Batch == b.Batch && a.Cache == b.Cache
}

func TestLoadDefaultsAbsentOnly(t *testing.T) {
	c, _, err := load(t, "http: {listen: \"\"}\nnats: {embedded: {listen: \"\", store_dir: \"\"}}\n")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.HTTP.Listen != "" {
		t.Errorf("explicit empty http.listen became %q, want it kept (disabled)", c.HTTP.Listen)
	}
	if e := c.NATS.Embedded; e.Listen != "127.0.0.1:4222" || e.StoreDir != "./data/nats" {
		t.Errorf("embedded = %+v, want defaults for empty strings", e)
	}
}

func TestLoadEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		check   func(*config.Config) bool
		ignored []string
	}{
		{
			name:  "nats url",
			env:   []string{"JETFOLD_NATS_URL=nats://example:4222"},
			check: func(c *config.Config) bool { return c.NATS.URL == "nats://example:4222" },
		},
		{
			name:  "list index into a field absent from the file",
			env:   []string{"JETFOLD_PIPELINES_0_BATCH_SIZE=7"},
			check: func(c *config.Config) bool { return c.Pipelines[0].Batch.Size == 7 },
		},
		{
			name:  "nested struct field",
			env:   []string{"JETFOLD_NATS_EMBEDDED_STORE_DIR=/var/lib/jetfold"},
			check: func(c *config.Config) bool { return c.NATS.Embedded.StoreDir == "/var/lib/jetfold" },
		},
		{
			name: "durations",
			env:  []string{"JETFOLD_PIPELINES_0_BATCH_MAX_WAIT=1s", "JETFOLD_STREAMS_1_DUPLICATE_WINDOW=2h"},
			check: func(c *config.Config) bool {
				return c.Pipelines[0].Batch.MaxWait == time.Second && c.Streams[1].DuplicateWindow == 2*time.Hour
			},
		},
		{
			name: "list as comma-separated string and list item",
			env:  []string{"JETFOLD_STREAMS_1_SUBJECTS=a.>,b.>", "JETFOLD_STREAMS_0_SUBJECTS_1=shop.payment.>"},
			check: func(c *config.Config) bool {
				return slices.Equal(c.Streams[1].Subjects, []string{"a.>", "b.>"}) &&
					slices.Equal(c.Streams[0].Subjects, []string{"shop.cart.>", "shop.payment.>"})
			},
		},
		{
			name: "inside an operator",
			env:  []string{"JETFOLD_PIPELINES_0_OPERATORS_0_FILTER=true"},
			check: func(c *config.Config) bool {
				return c.Pipelines[0].Operators[0]["filter"] == "true"
			},
		},
		{
			name:  "token file, absent from the file",
			env:   []string{"JETFOLD_HTTP_TOKEN_FILE=/run/secrets/jetfold-token"},
			check: func(c *config.Config) bool { return c.HTTP.TokenFile == "/run/secrets/jetfold-token" },
		},
		{
			name:  "empty value disables http",
			env:   []string{"JETFOLD_HTTP_LISTEN="},
			check: func(c *config.Config) bool { return c.HTTP.Listen == "" },
		},
		{
			name:  "foreign variables and jetfold's own",
			env:   []string{"NATS_URL=nats://ignored", "JETFOLD_FAILPOINTS=x", "JETFOLD_LONG_TESTS=1"},
			check: func(c *config.Config) bool { return c.NATS.URL == "" },
		},
		{
			name:  "last duplicate wins",
			env:   []string{"JETFOLD_PIPELINES_0_KEY=a", "JETFOLD_PIPELINES_0_KEY=b"},
			check: func(c *config.Config) bool { return c.Pipelines[0].Key == "b" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(t, validYAML, tt.env...)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tt.check(c) {
				t.Errorf("override not applied: %+v", c)
			}
			if !slices.Equal(c.IgnoredEnv, tt.ignored) {
				t.Errorf("IgnoredEnv = %v, want %v", c.IgnoredEnv, tt.ignored)
			}
		})
	}
}

// TestLoadUnknownEnv: a JETFOLD_ variable that sets no field is an error, as an unknown field
// in the file is, with the variable it may have meant.
func TestLoadUnknownEnv(t *testing.T) {
	c, _, err := load(t, validYAML, "JETFOLD_NOPE=1", "JETFOLD_PIPELINES_5_KEY=x", "JETFOLD_nats_url=x", "JETFOLD_NATS_UTL=x")
	if err == nil {
		t.Fatalf("Load = %+v, want errors", c)
	}
	want := []string{
		"environment variable JETFOLD_NATS_UTL sets no field of the configuration (hint: did you mean JETFOLD_NATS_URL?)",
		"environment variable JETFOLD_NOPE sets no field of the configuration (hint: a variable is JETFOLD_ and a field's path",
		"environment variable JETFOLD_PIPELINES_5_KEY sets no field of the configuration (hint: did you mean JETFOLD_PIPELINES_0_KEY?)",
		"environment variable JETFOLD_nats_url sets no field of the configuration (hint: did you mean JETFOLD_NATS_URL?)",
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("errors %q\nlack %q", err, w)
		}
	}
	if got := []string{"JETFOLD_NATS_UTL", "JETFOLD_NOPE", "JETFOLD_PIPELINES_5_KEY", "JETFOLD_nats_url"}; !slices.Equal(c.IgnoredEnv, got) {
		t.Errorf("IgnoredEnv = %v, want %v", c.IgnoredEnv, got)
	}
}

func TestLoadEnvErrors(t *testing.T) {
	c, path, err := load(t, validYAML, "JETFOLD_PIPELINES_0_BATCH_SIZE=lots", "JETFOLD_PIPELINES_0_SOURCE_START=seq:0")
	if err == nil {
		t.Fatalf("Load = %+v, want errors", c)
	}
	want := []string{
		path + `:9:5: invalid integer "lots" for pipelines[0].batch.size (from JETFOLD_PIPELINES_0_BATCH_SIZE)`,
		path + `:10:35: invalid start "seq:0" in pipelines[0].source: sequence "0" is not a positive integer ` +
			`(from JETFOLD_PIPELINES_0_SOURCE_START) (hint: use all, new, seq:<n> or time:<RFC3339>)`,
	}
	if got := errorLines(err); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestLoadOperatorKeys: keys inside operators are kept as written, dots and case included
// (koanf splits keys on its delimiter only when told to), and a variable reaches them.
func TestLoadOperatorKeys(t *testing.T) {
	yaml := shopStream + "pipelines:\n" + carts + "    operators:\n" +
		"      - set: {userId: a, userid: b}\n" +
		"      - fold: {projection: p, on: {shop.order.placed: {n: 1}}}\n"
	c, _, err := load(t, yaml, "JETFOLD_PIPELINES_0_OPERATORS_0_SET_USERID=c")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	ops := c.Pipelines[0].Operators
	if set := ops[0]["set"].(map[string]any); set["userId"] != "c" || set["userid"] != "c" {
		t.Errorf("set = %v, want both keys set from the variable", set)
	}
	on := ops[1]["fold"].(map[string]any)["on"].(map[string]any)
	if _, ok := on["shop.order.placed"]; !ok || len(on) != 1 {
		t.Errorf("on = %v, want the key shop.order.placed", on)
	}
	if want := "c (from JETFOLD_PIPELINES_0_OPERATORS_0_SET_USERID)"; !strings.HasSuffix(
		c.Errorf("pipelines.0.operators.0.set.userId", "c").Error(), want) {
		t.Errorf("an error at the value does not name the variable")
	}
}

func TestEnvName(t *testing.T) {
	for path, want := range map[string]string{
		"nats.embedded.store_dir": "JETFOLD_NATS_EMBEDDED_STORE_DIR",
		"pipelines.0.batch.size":  "JETFOLD_PIPELINES_0_BATCH_SIZE",
		"http.listen":             "JETFOLD_HTTP_LISTEN",
	} {
		if got := config.EnvName(path); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestPos(t *testing.T) {
	c, path, err := load(t, validYAML)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tests := []struct {
		name      string
		path      string
		key       bool
		line, col int
	}{
		{"value", "pipelines.0.source.stream", false, 10, 22},
		{"key", "pipelines.0.source.stream", true, 10, 14},
		{"inside an operator", "pipelines.0.operators.1.fold.on.product-added-to-cart.items", false, 18, 44},
		{"list item", "streams.1", false, 7, 5},
		{"absent field falls back to its parent", "pipelines.0.batch.size", false, 9, 5},
		{"list item has no key", "pipelines.0", true, 9, 5},
		{"root", "", false, 1, 1},
		{"unknown path", "nope.nope", false, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.Pos(tt.path)
			if tt.key {
				got = c.KeyPos(tt.path)
			}
			if want := (diag.Pos{File: path, Line: tt.line, Col: tt.col}); got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	e := c.Errorf("pipelines.0.operators.0.filter", "cannot compile %q", "x")
	e.Hint = "check it"
	if want := path + `:13:17: cannot compile "x" (hint: check it)`; e.Error() != want {
		t.Errorf("Errorf = %q, want %q", e.Error(), want)
	}
	if !errors.Is(e, diag.ErrInvalid) || e.Path != "pipelines.0.operators.0.filter" {
		t.Errorf("Errorf = %+v", e)
	}
}

func TestValidateInCode(t *testing.T) {
	valid := func() *config.Config {
		c := &config.Config{
			Streams: []config.Stream{{Name: "S", Subjects: []string{"s.>"}}},
			Pipelines: []config.Pipeline{{
				Name: "p", Source: config.Source{Stream: "S"}, Key: "event.id",
				Operators: []config.Operator{{"filter": "true"}},
			}},
		}
		c.SetDefaults()
		return c
	}
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string
	}{
		{"valid", func(*config.Config) {}, ""},
		{"time start", func(c *config.Config) { c.Pipelines[0].Source.Start = "time:2024-05-01T12:00:00.5Z" }, ""},
		{"bad time start", func(c *config.Config) { c.Pipelines[0].Source.Start = "time:yesterday" },
			`invalid start "time:yesterday" in pipelines[0].source: "yesterday" is not an RFC3339 time such as ` +
				`2024-05-01T12:00:00Z (hint: use all, new, seq:<n> or time:<RFC3339>)`},
		{"undeclared stream", func(c *config.Config) { c.Streams = nil },
			`unknown stream "S" in pipelines[0].source (hint: declare it under streams:)`},
		{"duplicate", func(c *config.Config) { c.Pipelines = append(c.Pipelines, c.Pipelines[0]) },
			`duplicate pipeline name "p" (first defined at pipelines[0].name)`},
		{"bad name", func(c *config.Config) { c.Pipelines[0].Name = "p.q" },
			`invalid pipeline name "p.q" (hint: use only letters, digits, _ and -)`},
		{"stop", func(c *config.Config) { c.Pipelines[0].Source.Stop = "never" },
			`invalid stop "never" in pipelines[0].source (hint: use follow or end)`},
		{"sync interval always", func(c *config.Config) { c.NATS.Embedded.SyncInterval = "always" }, ""},
		{"sync interval", func(c *config.Config) { c.NATS.Embedded.SyncInterval = "1m" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Validate = %v, want %s", err, tt.wantErr)
			case err != nil && !errors.Is(err, diag.ErrInvalid):
				t.Errorf("Validate error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestStartPosition(t *testing.T) {
	tests := []struct {
		start   string
		want    config.StartPos
		wantErr bool
	}{
		{"", config.StartPos{Kind: config.StartAll}, false},
		{"all", config.StartPos{Kind: config.StartAll}, false},
		{"new", config.StartPos{Kind: config.StartNew}, false},
		{"seq:42", config.StartPos{Kind: config.StartSeq, Seq: 42}, false},
		{"time:2024-05-01T12:00:00Z", config.StartPos{Kind: config.StartTime,
			Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}, false},
		{"time:2024-05-01T12:00:00.123456789+02:00", config.StartPos{Kind: config.StartTime,
			Time: time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)}, false},
		{"seq:0", config.StartPos{}, true},
		{"seq:-1", config.StartPos{}, true},
		{"seq:x", config.StartPos{}, true},
		{"time:2024-05-01", config.StartPos{}, true},
		{"first", config.StartPos{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.start, func(t *testing.T) {
			got, err := config.Source{Start: tt.start}.StartPosition()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, diag.ErrInvalid) {
					t.Errorf("err %v does not wrap ErrInvalid", err)
				}
				return
			}
			if got.Kind != tt.want.Kind || got.Seq != tt.want.Seq || !got.Time.Equal(tt.want.Time) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestHTTPToken: the token is the file's content trimmed; no file configured is no token; a
// missing or blank file is an error that names the file and never shows a token.
func TestHTTPToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		file    string
		want    string
		wantErr error
	}{
		{name: "none configured", file: "", want: ""},
		{name: "trimmed", file: write("tok", "  s3cret-token\n"), want: "s3cret-token"},
		{name: "blank", file: write("blank", " \n\t\n"), wantErr: config.ErrEmptyToken},
		{name: "missing", file: filepath.Join(dir, "nope"), wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := config.HTTP{TokenFile: tt.file}.Token()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil) != (err != nil) {
				t.Fatalf("Token() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "http.token_file") {
				t.Errorf("error %q does not name the field", err)
			}
			if got != tt.want {
				t.Errorf("Token() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestAuthConflicts: one authentication method at a time, a password with its user, both
// halves of a client certificate; the messages name fields, never values.
func TestAuthConflicts(t *testing.T) {
	const pipelines = `
streams: [{name: S, subjects: ["s.>"]}]
pipelines:
  - name: p
    source: {stream: S}
    key: event.k
    operators:
      - fold: {projection: x, on: {"*": {n: "1"}}}
`
	tests := []struct {
		name, nats, want string
	}{
		{"user and token", "nats: {user: u, password: SECRET, token: SECRET}", "nats.token is set with nats.user"},
		{"creds and nkey", "nats: {creds_file: /a, nkey_file: /b}", "nats.nkey_file is set with nats.creds_file"},
		{"password alone", "nats: {password: SECRET}", "nats.password is set without nats.user"},
		{"cert without key", "nats: {tls: {cert_file: /c}}", "cert_file is set without nats.tls.key_file"},
		{"key without cert", "nats: {tls: {key_file: /k}}", "key_file is set without nats.tls.cert_file"},
		{"an alias as a password", "nats: {user: u, password: *SECRET}", "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.nats+"\n"+pipelines)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error shows the value: %v", err)
			}
		})
	}
	if _, _, err := load(t, "nats: {user: u, password: SECRET}\n"+pipelines); err != nil {
		t.Errorf("user and password: %v", err)
	}
}

// TestKVReplicas: nats.kv_replicas is 1 to 5.
func TestKVReplicas(t *testing.T) {
	const rest = `
streams: [{name: S, subjects: ["s.>"]}]
pipelines:
  - {name: p, source: {stream: S}, key: event.k, operators: [{fold: {projection: x, on: {"*": {n: "1"}}}}]}
`
	for _, tt := range []struct {
		n    string
		fail bool
	}{{"3", false}, {"0", false}, {"6", true}, {"-1", true}} {
		_, _, err := load(t, "nats: {url: nats://h:4222, kv_replicas: "+tt.n+"}\n"+rest)
		if (err != nil) != tt.fail || tt.fail && !strings.Contains(err.Error(), "nats.kv_replicas must be 1 to 5") {
			t.Errorf("kv_replicas %s: %v, want failure %v", tt.n, err, tt.fail)
		}
	}
}

func TestPartitionToken(t *testing.T) {
	tests := []struct {
		dest     string
		n, token int
		ok       bool
	}{
		{"{{partition(4,1)}}.shop.{{wildcard(1)}}", 4, 1, true},
		{"{{ Partition( 16 , 2 ) }}.a.b", 16, 2, true},
		{"{{partition(4,1,2)}}.shop.{{wildcard(1)}}", 0, 0, false},
		{"shop.{{partition(4,1)}}.{{wildcard(1)}}", 0, 0, false},
		{"{{wildcard(1)}}.shop", 0, 0, false},
		{"{{partition(x,1)}}.shop", 0, 0, false},
		{"{{partition(0,1)}}.shop", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.dest, func(t *testing.T) {
			n, token, ok := config.PartitionToken(tt.dest)
			if n != tt.n || token != tt.token || ok != tt.ok {
				t.Errorf("PartitionToken(%q) = %d, %d, %v, want %d, %d, %v", tt.dest, n, token, ok, tt.n, tt.token, tt.ok)
			}
		})
	}
}

func TestPartitionSubject(t *testing.T) {
	tests := []struct {
		subjects []string
		i        int
		want     string
	}{
		{nil, 3, "3.>"},
		{[]string{">"}, 0, "0.>"},
		{[]string{"*.shop.>"}, 2, "2.shop.>"},
		{[]string{"*"}, 1, "1"},
	}
	for _, tt := range tests {
		if got := config.PartitionSubject(tt.subjects, tt.i); got != tt.want {
			t.Errorf("PartitionSubject(%q, %d) = %q, want %q", tt.subjects, tt.i, got, tt.want)
		}
	}
}
