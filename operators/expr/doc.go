// Package expr compiles and runs the expressions of a pipeline's configuration (expr-lang
// expressions over `event`, `state`, `key`, `type`, `time`, ...), with fast paths for the
// common forms.
//
// [Compile] type-checks an expression against [Env]; a [Runner] evaluates it on an
// event.Event. `event.x` and `state.x` are compiled to a direct member read, `A op B` over
// numbers is computed without the VM, and an expression bound to a decoder's layout
// ([BindLayout]) or a state's shape ([BindShape]) reads fields by slot. [StateType] checks at
// load time the expressions that read `state` against what the folds of a projection write.
// [EventFields] tells which event fields the expressions read, so that only those are decoded.
package expr
