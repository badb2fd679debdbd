// Command processor runs jetfold pipelines: declarative YAML that folds NATS JetStream streams
// into key-value projections, with checkpoints and derived events. See README.md.
package main
