package pipeline

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/pipeline/status"
)

// ReadStatus reads the status of p from NATS (see status.Read); it does not need p to be
// running.
func ReadStatus(ctx context.Context, js jetstream.JetStream, p *Pipeline) (status.Status, error) {
	of := status.Of{
		Pipeline: p.Name, Stream: p.Config.Source.Stream,
		Subjects: p.Config.Source.Subjects, Projections: p.Projections,
		Partitions: p.Config.Partitions,
	}
	if p.Config.Source.PartitionedBySubject && p.Config.Partitions > 1 {
		of.PartitionSubjects = func(i int) []string {
			return []string{config.PartitionSubject(p.Config.Source.Subjects, i)}
		}
	}
	return status.Read(ctx, js, of)
}
