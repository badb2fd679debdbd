package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetfold/jetfold/internal/natstest"
	"github.com/jetfold/jetfold/internal/pipetest"
	"github.com/jetfold/jetfold/pipeline"
)

// TestCommands runs the bank example's pipeline (following) and sends it commands as the
// client does: each gets its own result, accepted with the new balance or rejected with the
// reason, found by its command id.
func TestCommands(t *testing.T) {
	srv := natstest.Server(t)
	_, js := natstest.Connect(t, srv)
	y, err := os.ReadFile("../pipelines.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(y), "stop: end", "stop: follow", 1)
	cfg = strings.Replace(cfg, `url: ""`, `url: "`+srv.ClientURL()+`"`, 1)
	cfg = strings.Replace(cfg, "listen: 127.0.0.1:8080", "listen: none", 1)
	ps := pipetest.Build(t, js, filepath.Join(t.TempDir(), "bank.yaml"), cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pipeline.RunAll(ctx, ps, pipeline.Options{JS: js, OutputStreams: []string{"BANK_EVENTS"}})
	}()

	tests := []struct {
		cmd  Command
		want string // the result's subject prefix and a field it must have
		has  string
	}{
		{Command{Type: "deposit", Account: "a", Amount: 50}, "bank.evt.accepted.", "50"},
		{Command{Type: "withdraw", Account: "a", Amount: 20}, "bank.evt.accepted.", "30"},
		{Command{Type: "withdraw", Account: "a", Amount: 100}, "bank.evt.rejected.", "insufficient funds"},
		{Command{Type: "deposit", Account: "b", Amount: 0}, "bank.evt.rejected.", "the amount must be positive"},
	}
	for _, tt := range tests {
		tt.cmd.CommandID = NewID()
		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := Send(sctx, js, tt.cmd)
		scancel()
		if err != nil {
			t.Fatal(err)
		}
		if res.Subject != tt.want+tt.cmd.CommandID || res.Data["command_id"] != tt.cmd.CommandID {
			t.Errorf("%+v: result %s %v", tt.cmd, res.Subject, res.Data)
		}
		if got := res.Data["balance"]; tt.has != "" && !strings.Contains(strings.Join([]string{toString(got), toString(res.Data["reason"])}, " "), tt.has) {
			t.Errorf("%+v: result %v, want %q in it", tt.cmd, res.Data, tt.has)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func toString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
