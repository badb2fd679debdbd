// Command client sends one command to the bank example and waits for its result: it
// publishes the command on bank.cmd.<account> with a fresh command id (also its Nats-Msg-Id,
// so a retry is not applied twice) and reads bank.evt.*.<command id> from the BANK_EVENTS
// stream, where the pipeline publishes command-accepted or command-rejected.
//
// With the example running (stop: follow) on the embedded server:
//
//	go run ./examples/bank/client -account acc-1 -type withdraw -amount 10
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Command is a command of the bank example.
type Command struct {
	Type      string  `json:"type"`
	CommandID string  `json:"command_id"`
	Account   string  `json:"account"`
	Amount    float64 `json:"amount"`
}

// Result is the pipeline's answer to a command: its subject and its data.
type Result struct {
	Subject string
	Data    map[string]any
}

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS URL (the example's embedded server listens on 127.0.0.1:4222)")
	account := flag.String("account", "acc-1", "account")
	typ := flag.String("type", "deposit", "deposit or withdraw")
	amount := flag.Float64("amount", 10, "amount")
	wait := flag.Duration("wait", 10*time.Second, "how long to wait for the result")
	flag.Parse()
	nc, err := nats.Connect(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()
	res, err := Send(ctx, js, Command{Type: *typ, CommandID: NewID(), Account: *account, Amount: *amount})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b, _ := json.Marshal(res.Data)
	fmt.Printf("%s %s\n", res.Subject, b)
}

// NewID returns a random command id.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// Send publishes cmd and returns the result the pipeline published for it, reading the
// events stream for the subjects that end with its command id: a result published before
// the read began is found too.
func Send(ctx context.Context, js jetstream.JetStream, cmd Command) (Result, error) {
	data, err := json.Marshal(cmd)
	if err != nil {
		return Result{}, err
	}
	if _, err := js.Publish(ctx, "bank.cmd."+cmd.Account, data, jetstream.WithMsgID(cmd.CommandID)); err != nil {
		return Result{}, fmt.Errorf("publish the command: %w", err)
	}
	c, err := js.OrderedConsumer(ctx, "BANK_EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"bank.evt.*." + cmd.CommandID},
	})
	if err != nil {
		return Result{}, fmt.Errorf("read the results: %w", err)
	}
	for {
		msg, err := c.Next(jetstream.FetchMaxWait(time.Second))
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
			return Result{}, fmt.Errorf("no result for %s: %w", cmd.CommandID, ctx.Err())
		}
		if err != nil {
			continue // nothing yet
		}
		var r Result
		r.Subject = msg.Subject()
		if err := json.Unmarshal(msg.Data(), &r.Data); err != nil {
			return Result{}, fmt.Errorf("result of %s: %w", cmd.CommandID, err)
		}
		return r, nil
	}
}
