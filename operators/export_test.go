package operators

// BindState exposes bindState to the package's external tests.
var BindState = bindState

// WholeState tells whether e hands the VM the state as a map.
func WholeState(e *Expr) bool { return e.wholeState }
