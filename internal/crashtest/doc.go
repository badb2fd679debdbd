// Package crashtest holds the cross-process tests of the processor binary: they build
// cmd/processor with -tags failpoints, run it as a child process and break it, or NATS under
// it, at random moments (SIGKILLs from outside and at failpoints inside the commit, NATS
// server restarts, connections cut through a TCP proxy, two processors on one configuration
// with the active one killed, kills of a processor that runs its own embedded server). After
// each, every projection key, derived event and dead letter is compared with an oracle
// computed from the published events ([github.com/jetfold/jetfold/internal/shoptest]): they
// prove the effectively-once guarantee of the commit protocol (package checkpoint) end to
// end, and that the source consumers killed processes leave behind go within their
// inactivity threshold.
//
// The rebuild tests do the same to `processor rebuild` (package pipeline/rebuild) beside a
// live `processor run` under load: SIGKILLs from outside during the replay and the hand-over,
// at each failpoint of the rebuild's commits and on both sides of its switch, interruptions
// that the next run resumes; then both versions of the projection, the switch point and the
// derived events are compared with an oracle of their own.
//
// A failure prints its seed; JETFOLD_CRASH_SEED=<seed> replays the same kill times and
// workload. JETFOLD_LONG_TESTS=1 runs the long form, on 50,000 events instead of 10,000;
// -short runs fewer faults. JETFOLD_CRASH_DIR=<dir> puts the store and the children's logs
// of the tests against a separate server in dir, to look into a failure.
//
// The cluster tests (TestClusterFailover, TestClusterFailoverPartitioned) run three
// processors on one configuration against a 3-node JetStream cluster on loopback
// (natstest.NewCluster) with every stream and bucket at three replicas, SIGKILL a lease holder
// and stop a node during the run, log the failover time (kill to the next checkpoint advance
// in another processor) and compare with the oracle; the partitioned one spreads the carts
// pipeline's 4 partitions over the processors (pipeline.Share).
//
// The package has no code outside its tests.
package crashtest
