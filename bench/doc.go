// Package bench measures jetfold against the raw JetStream consume rate in one run, on an
// embedded nats-server in a temporary directory: the standard workload is published once,
// read by a plain consumer as fast as JetStream hands it out, then folded by a pipeline until
// its checkpoint reaches the stream head. The ratio of the two rates is the figure that counts:
// it holds on a noisy machine where absolute rates do not.
//
// The replicas mode (Options.Replicas) folds the workload in separate `processor run`
// processes instead, in 1 or more partitions, against the embedded server on a loopback port,
// and measures the fold once the partitions have settled between the processes.
package bench
