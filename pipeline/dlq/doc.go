// Package dlq reads, shows and redrives a pipeline's dead letters.
//
// The dead letters of pipeline P are the messages on subject _jetfold.dlq.P
// ([streams.DLQSubject]) in whichever stream captures that subject: by default
// [streams.DLQStream], which the pipeline creates when no declared stream does. Each one
// holds the original payload and application headers, plus the headers the pipeline adds
// (see commit.HeaderError and its siblings). [List] reads them in order with an
// ordered consumer filtered on that subject, [Get] reads one by its sequence in that stream,
// and [Redrive] publishes their payloads back to their original subjects and deletes them
// once JetStream has acknowledged the republished event.
//
// A redriven event is a new event at the head of its stream, with a new sequence: the
// pipeline applies it after every event that followed it originally. Its Nats-Msg-Id is
// [RedriveID] (redrive:<pipeline>:<dead-letter sequence>), so a redrive that is repeated
// within the target stream's duplicate window adds nothing.
package dlq
