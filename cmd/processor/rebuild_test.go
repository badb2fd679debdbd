package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/pipeline/rebuild"
)

// rebuildYAML is a pipeline folding shop.orders into totals, on the server at %s.
const rebuildYAML = `nats: {url: %q}
http: {listen: none}
streams:
  - {name: SHOP, subjects: ["shop.>"]}
pipelines:
  - name: totals
    source: {stream: SHOP, start: all, stop: end}
    key: event.user_id
    operators:
      - fold: {projection: totals, on: {order: {count: '(state.count ?? 0) + 1'}}}
`

// rebuildSetup writes the configuration and two events for the server at url, and returns
// the configuration's path after publishing them and running the pipeline once.
func rebuildSetup(t *testing.T, url string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yaml")
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, rebuildYAML, url), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(events, []byte(`{"subject": "shop.orders", "data": {"type": "order", "user_id": "alice"}}
{"subject": "shop.orders", "data": {"type": "order", "user_id": "bob"}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"publish", "-c", cfg, "-q", events}, {"run", "-c", cfg}} {
		var out bytes.Buffer
		if code := Main(args, &out, &out); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out.String())
		}
	}
	return cfg
}

// TestRebuildExitCodes checks the exit codes of rebuild, which the scripts cannot: 0 when
// switched or dropped, 2 for an unknown pipeline, a flag mistake or nothing run yet, 1 while
// another rebuild of the pipeline runs.
func TestRebuildExitCodes(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	cfg := rebuildSetup(t, srv.ClientURL())
	embedded := filepath.Join(t.TempDir(), "e.yaml")
	yaml := strings.Replace(fmt.Sprintf(rebuildYAML, ""), `nats: {url: ""}`,
		fmt.Sprintf("nats: {url: \"\", embedded: {store_dir: %q, listen: none}}", filepath.Join(t.TempDir(), "data")), 1)
	if err := os.WriteFile(embedded, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}

	// Another holder of the rebuild's lock: a rebuild running elsewhere.
	ctx := context.Background()
	other, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{Holder: "elsewhere-1"})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		locked bool
		code   int
		stderr string
	}{
		{"rebuild", []string{"rebuild", "-c", cfg, "totals"}, false, 0, ""},
		{"drop only", []string{"rebuild", "-c", cfg, "totals", "--drop-only"}, false, 0, ""},
		{"unknown pipeline", []string{"rebuild", "-c", cfg, "nope"}, false, 2, `unknown pipeline "nope"`},
		{"drop only and from", []string{"rebuild", "-c", cfg, "totals", "--drop-only", "--from", "all"}, false, 2, "--drop-only takes"},
		{"bad from", []string{"rebuild", "-c", cfg, "totals", "--from", "soon"}, false, 2, "--from"},
		{"not started", []string{"rebuild", "-c", embedded, "totals"}, false, 2, "not started yet"},
		{"another rebuild runs", []string{"rebuild", "-c", cfg, "totals"}, true, 1, rebuild.ErrRunning.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.locked {
				_, release, err := other.AcquireWithin(ctx, checkpoint.RebuildKey("totals"), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer release()
			}
			var out, errOut bytes.Buffer
			code := Main(tt.args, &out, &errOut)
			if code != tt.code || !strings.Contains(errOut.String(), tt.stderr) {
				t.Errorf("%v: exit %d, want %d with %q\n%s%s", tt.args, code, tt.code, tt.stderr, out.String(), errOut.String())
			}
		})
	}
}

// TestRebuildInterruptedResumes: a rebuild interrupted (here while it waits for the live
// pipeline's holder, which does not hand over) says how to resume and exits 1; the same
// command then resumes it and switches.
func TestRebuildInterruptedResumes(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	cfg := rebuildSetup(t, srv.ClientURL())
	ctx := context.Background()
	live, err := checkpoint.OpenLeases(ctx, js, checkpoint.LeaseOptions{Holder: "elsewhere-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, release, err := live.AcquireWithin(ctx, "totals", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var out, errOut natstest.Buffer
	code := make(chan int, 1)
	args := []string{"rebuild", "-c", cfg, "totals"}
	go func() { code <- mainContext(cctx, args, &out, &errOut) }()
	natstest.Eventually(t, 20*time.Second, "the rebuild's handover", func() bool {
		return strings.Contains(errOut.String(), "phase=handover")
	})
	cancel()
	if c := <-code; c != 1 {
		t.Fatalf("interrupted rebuild: exit %d, want 1\n%s%s", c, out.String(), errOut.String())
	}
	want := "interrupted: what it wrote is kept; run the same command to resume:\n  processor rebuild -c " + cfg + " totals\n"
	if !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
	}

	// The holder is gone (its lease ended): the same command resumes.
	kv, err := js.KeyValue(ctx, checkpoint.LeaseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "totals"); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if c := Main(args, &again, &again); c != 0 || !strings.Contains(again.String(), "switched to version 2 at checkpoint 2 (resumed an interrupted rebuild)") {
		t.Errorf("rebuild again: exit %d\n%s", c, again.String())
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		name string
		p    rebuild.Progress
		want string
	}{
		{"start", rebuild.Progress{Phase: "replay", Total: 4000}, "[..............................]  0/4000  0/s  left -  replay"},
		{"under way", rebuild.Progress{Phase: "replay", Done: 1200, Total: 4000, Rate: 700},
			"[#########.....................]  1200/4000  700/s  left 4s  replay"},
		{"handover", rebuild.Progress{Phase: "handover", Done: 4000, Total: 4000, Rate: 812.5},
			"[##############################]  4000/4000  812/s  left -  handover"},
		{"done, nothing to replay", rebuild.Progress{Phase: "done"}, "[##############################]  0/0  0/s  left -  done"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := progressLine(tt.p); got != tt.want {
				t.Errorf("progressLine = %q\nwant           %q", got, tt.want)
			}
		})
	}
}

// TestProgressShowTerminal: on a terminal, log lines go around the progress line, which is
// drawn again after each.
func TestProgressShowTerminal(t *testing.T) {
	var b bytes.Buffer
	s := &progressShow{w: &b, tty: true}
	s.update(rebuild.Progress{Phase: "replay", Done: 1, Total: 2})
	line := progressLine(rebuild.Progress{Phase: "replay", Done: 1, Total: 2})
	fmt.Fprint(s, "a log line\n")
	s.end()
	blank := "\r" + strings.Repeat(" ", len(line)) + "\r"
	if want := "\r" + line + blank + "a log line\n" + line + "\n"; b.String() != want {
		t.Errorf("terminal output = %q\nwant %q", b.String(), want)
	}
}

// TestRebuildOverHTTP: a running processor with a token serves the rebuild route; the
// rebuild takes the pipeline over from the process's own runner, switches, and the runner
// goes on on the new version.
func TestRebuildOverHTTP(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yaml")
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(fmt.Sprintf(rebuildYAML, srv.ClientURL()), "http: {listen: none}", "http: {listen: \"127.0.0.1:0\"}", 1)
	yaml = strings.Replace(yaml, "stop: end", "stop: follow", 1) + "processor: {lease_ttl: 1s}\n" // a quick hand-over
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JETFOLD_HTTP_TOKEN_FILE", tokenFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut natstest.Buffer
	code := make(chan int, 1)
	go func() { code <- mainContext(ctx, []string{"run", "-c", cfg}, &out, &errOut) }()
	addr := regexp.MustCompile(`msg="http listening" addr=(\S+)`)
	var base string
	natstest.Eventually(t, 20*time.Second, "the HTTP listener", func() bool {
		m := addr.FindStringSubmatch(errOut.String())
		if m != nil {
			base = "http://" + m[1]
		}
		return m != nil
	})
	natstest.Publish(t, js, "shop.orders", [][]byte{[]byte(`{"type": "order", "user_id": "alice"}`)}) // the run created the stream
	state := func() string {
		resp, err := http.Get(base + "/v1/projections/totals/alice")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	natstest.Eventually(t, 20*time.Second, "alice's first order", func() bool { return strings.Contains(state(), `"state":{"count":1}`) })

	post := func(auth string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/pipelines/totals/rebuild", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("Bearer nope"); c != http.StatusUnauthorized {
		t.Fatalf("POST with another token = %d, want 401", c)
	}
	if c := post("Bearer t0ken"); c != http.StatusAccepted {
		t.Fatalf("POST = %d, want 202", c)
	}
	var status string
	natstest.Eventually(t, 30*time.Second, "the rebuild to end", func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/pipelines/totals/rebuild", nil)
		req.Header.Set("Authorization", "Bearer t0ken")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		status = string(b)
		return !strings.Contains(status, `"state":"running"`)
	})
	if !strings.Contains(status, `"state":"done"`) || !strings.Contains(status, `"buckets":{"totals":"totals_v2"}`) {
		t.Fatalf("rebuild status: %s\n%s", status, errOut.String())
	}

	// The runner goes on, on the new version, which readers read.
	natstest.Publish(t, js, "shop.orders", [][]byte{[]byte(`{"type": "order", "user_id": "alice"}`)})
	natstest.Eventually(t, 20*time.Second, "alice's second order, on version 2", func() bool { return strings.Contains(state(), `"state":{"count":2}`) })
	if cur, err := checkpoint.CurrentBucket(context.Background(), js, "totals"); err != nil || cur != "totals_v2" {
		t.Errorf("current bucket = %q, %v", cur, err)
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run: exit %d\n%s", c, errOut.String())
	}
	if strings.Contains(errOut.String(), "t0ken") || strings.Contains(out.String(), "t0ken") {
		t.Error("the output shows the token")
	}
}
