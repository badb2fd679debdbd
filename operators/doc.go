// Package operators holds the steps of a jetfold pipeline and their contract: filter, set, map,
// key, fold and emit, the [Operator], [Store] and [Clock] interfaces, and the [Registry].
//
// An [Operator] sees one event.Event at a time through [Operator.Process]. Operators never
// touch NATS and never acknowledge messages: they read and change the event, read per-key state
// through the [Store] of the [Exec] they are given, and stage their effects on the event
// (state writes in Event.Writes, derived events in Event.Outputs). The pipeline applies
// staged effects once the chain is done with the event, also when an operator dropped it (a
// filter after a fold leaves the fold's write), but never when an operator failed: an event
// that fails half way leaves no trace but its dead letter. Operators that act on the passing of event
// time implement [Clock].
//
// The data operators work on is in the sub-package event, the expressions they run in expr.
// Operators are built from configuration by a [Registry] of [Spec] values; the command builds
// the registry explicitly with operators/builtin.Registry (no init-time registration). The
// constructors of every operator package read their configuration with the helpers of this
// one ([Fields], [CompileExpr], [Duration], [ParseHandler], [FieldErr]...), so that the same
// mistake reads the same in every operator.
package operators
