// Package builtin assembles the registry of every operator jetfold ships: the core ones of
// package operators and the stateful ones of its sub-packages.
package builtin

import (
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/dedupe"
	"github.com/jetfold/jetfold/operators/lookup"
	"github.com/jetfold/jetfold/operators/timeout"
	"github.com/jetfold/jetfold/operators/window"
)

// Registry returns a registry with every operator jetfold ships.
func Registry() *operators.Registry {
	r := operators.Core()
	for _, s := range []operators.Spec{lookup.Spec(), window.Spec(), timeout.Spec(), dedupe.Spec()} {
		if err := r.Register(s); err != nil {
			panic(err) // a programming error, never user input
		}
	}
	return r
}
