package opstest

import (
	"errors"
	"strings"
	"testing"

	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/expr"
)

// Build builds raw with spec's constructor in a pipeline named p, failing the test on an
// error.
func Build(t testing.TB, spec operators.Spec, raw any) operators.Operator {
	t.Helper()
	op, err := spec.Build(operators.BuildContext{Pipeline: "p"}, raw)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return op
}

// BuildError builds raw with spec's constructor in a pipeline named p and checks that it
// fails, its first *expr.FieldError at field with a message that holds msg.
func BuildError(t testing.TB, spec operators.Spec, raw any, field, msg string) {
	t.Helper()
	_, err := spec.Build(operators.BuildContext{Pipeline: "p"}, raw)
	var fe *expr.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %v is not a FieldError", err)
	}
	if fe.Field != field || !strings.Contains(fe.Err.Error(), msg) {
		t.Errorf("got field %q error %q, want field %q containing %q", fe.Field, fe.Err, field, msg)
	}
}
