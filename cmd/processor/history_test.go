package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/jetfold/jetfold/internal/natstest"
)

// TestReplayExitCodes checks the exit codes of get --at and history, which the scripts
// cannot: 0 with an answer, 2 when there is nothing at that point (as get without state),
// 1 for a mistake.
func TestReplayExitCodes(t *testing.T) {
	srv := natstest.Server(t)
	t.Setenv("JETFOLD_NATS_URL", srv.ClientURL())
	dir := t.TempDir()
	cfg := filepath.Join(dir, "p.yaml")
	events := filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(cfg, []byte(`
http: {listen: none}
streams:
  - {name: SHOP, subjects: ["shop.>"]}
pipelines:
  - name: totals
    source: {stream: SHOP, start: all, stop: end}
    key: event.user_id
    operators:
      - fold: {projection: totals, on: {order: {count: '(state.count ?? 0) + 1'}}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(events, []byte(`{"subject": "shop.orders", "data": {"type": "order", "user_id": "alice"}}
{"subject": "shop.orders", "data": {"type": "order", "user_id": "bob"}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"publish", "-c", cfg, "-q", events}, 0},
		{[]string{"get", "-c", cfg, "totals", "bob", "--at", "2"}, 0},
		{[]string{"get", "-c", cfg, "totals", "bob", "--at", "1"}, 2},
		{[]string{"get", "-c", cfg, "totals", "carol", "--at", "2"}, 2},
		{[]string{"get", "-c", cfg, "totals", "bob", "--at", "3"}, 1},
		{[]string{"get", "-c", cfg, "totals", "bob", "--at", "soon"}, 1},
		{[]string{"get", "-c", cfg, "nope", "bob", "--at", "1"}, 1},
		{[]string{"history", "-c", cfg, "totals", "alice"}, 0},
		{[]string{"history", "-c", cfg, "totals", "alice", "--at", "2000-01-01T00:00:00Z"}, 2},
		{[]string{"history", "-c", cfg, "totals", "carol"}, 2},
		{[]string{"history", "-c", cfg, "nope", "alice"}, 1},
	} {
		var out, errOut bytes.Buffer
		if code := Main(tt.args, &out, &errOut); code != tt.code {
			t.Errorf("%v: exit %d, want %d\n%s%s", tt.args, code, tt.code, out.String(), errOut.String())
		}
	}
}
