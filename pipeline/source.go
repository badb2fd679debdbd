package pipeline

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
)

// source pulls a consumer's messages into batches bounded by size and wait.
type source struct {
	cons jetstream.Consumer
	cfg  config.Batch
	log  *slog.Logger
	ch   chan jetstream.Msg
	quit chan struct{}
	cc   jetstream.ConsumeContext
	errs chan error
}

func newSource(cons jetstream.Consumer, cfg config.Batch, log *slog.Logger) *source {
	return &source{
		cons: cons, cfg: cfg, log: log,
		ch:   make(chan jetstream.Msg, cfg.Size),
		quit: make(chan struct{}),
		errs: make(chan error, 1),
	}
}

func (s *source) start() error {
	cc, err := s.cons.Consume(func(m jetstream.Msg) {
		select {
		case s.ch <- m:
		case <-s.quit:
		}
	},
		jetstream.PullMaxMessages(min(max(2*s.cfg.Size, 1000), 10_000)),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			s.log.Debug("consume", "err", err)
			if isTerminalConsumeErr(err) {
				select {
				case s.errs <- err:
				default:
				}
			}
		}),
	)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	s.cc = cc
	return nil
}

func isTerminalConsumeErr(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound)
}

func (s *source) stop() {
	close(s.quit)
	s.cc.Stop()
}
