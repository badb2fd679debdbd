package diag_test

import (
	"errors"
	"testing"

	"github.com/jetfold/jetfold/config/diag"
)

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    diag.Error
		want string
	}{
		{diag.Error{Pos: diag.Pos{File: "a.yaml", Line: 3, Col: 7}, Msg: "bad"}, "a.yaml:3:7: bad"},
		{diag.Error{Pos: diag.Pos{File: "a.yaml", Line: 3, Col: 7}, Msg: "bad", Hint: "fix"}, "a.yaml:3:7: bad (hint: fix)"},
		{diag.Error{Pos: diag.Pos{File: "a.yaml"}, Msg: "bad"}, "a.yaml: bad"},
		{diag.Error{Pos: diag.Pos{Line: 3}, Msg: "bad"}, "3: bad"},
		{diag.Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(&tt.e, diag.ErrInvalid) {
			t.Errorf("%q does not wrap ErrInvalid", tt.e.Error())
		}
	}
}

// at returns an *Error at line:col of a.yaml.
func at(line, col int, msg string) *diag.Error {
	return &diag.Error{Pos: diag.Pos{File: "a.yaml", Line: line, Col: col}, Msg: msg}
}

func TestJoin(t *testing.T) {
	other := errors.New("not positioned")
	tests := []struct {
		name string
		errs []error
		want string
	}{
		{"nothing", []error{nil, nil}, ""},
		{"file order", []error{at(3, 1, "c"), at(1, 5, "b"), at(1, 2, "a")}, "a.yaml:1:2: a\na.yaml:1:5: b\na.yaml:3:1: c"},
		{"first at a place kept", []error{at(2, 1, "first"), errors.Join(at(2, 1, "second"), at(1, 1, "top"))},
			"a.yaml:1:1: top\na.yaml:2:1: first"},
		{"unknown places all kept", []error{&diag.Error{Msg: "x"}, &diag.Error{Msg: "y"}}, "x\ny"},
		{"others at the end", []error{other, at(4, 4, "d")}, "a.yaml:4:4: d\nnot positioned"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := diag.Join(tt.errs...)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Join = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJoinSorted(t *testing.T) {
	if err := diag.JoinSorted(nil); err != nil {
		t.Errorf("JoinSorted(nil) = %v, want nil", err)
	}
	err := diag.JoinSorted([]*diag.Error{at(2, 1, "b"), at(1, 1, "a"), at(2, 1, "c")})
	if want := "a.yaml:1:1: a\na.yaml:2:1: b\na.yaml:2:1: c"; err == nil || err.Error() != want {
		t.Errorf("JoinSorted = %v, want %q", err, want)
	}
	if !errors.Is(err, diag.ErrInvalid) {
		t.Errorf("JoinSorted = %v, does not wrap ErrInvalid", err)
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct {
		s          string
		candidates []string
		want       string
	}{
		{"bach", []string{"batch", "pipelines"}, "batch"},
		{"SHPO", []string{"SHOP"}, "SHOP"}, // a swap is one edit
		{"skp", []string{"dead_letter", "skip", "stop"}, "skip"},
		{"JETFOLD_nats_url", []string{"JETFOLD_NATS_URL"}, "JETFOLD_NATS_URL"}, // case is ignored
		{"xml", []string{"json", "cloudevents", "raw"}, ""},
		{"from", []string{"stream", "subjects", "start", "stop"}, ""},
		{"x", nil, ""},
	}
	for _, tt := range tests {
		got, ok := diag.Suggest(tt.s, tt.candidates)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Suggest(%q, %v) = %q, %v, want %q", tt.s, tt.candidates, got, ok, tt.want)
		}
	}
}

func TestHintFor(t *testing.T) {
	tests := []struct {
		s     string
		valid []string
		want  string
	}{
		{"bach", []string{"batch", "cache"}, "did you mean batch?"},
		{"from", []string{"stream", "start"}, "valid fields: stream, start"},
		{"x", nil, ""},
	}
	for _, tt := range tests {
		if got := diag.HintFor(tt.s, tt.valid, "valid fields"); got != tt.want {
			t.Errorf("HintFor(%q, %v) = %q, want %q", tt.s, tt.valid, got, tt.want)
		}
	}
}

func TestDisplayPath(t *testing.T) {
	for path, want := range map[string]string{
		"":                     "the top level",
		"nats.url":             "nats.url",
		"pipelines.0.batch":    "pipelines[0].batch",
		"streams.1.subjects.2": "streams[1].subjects[2]",
		"0":                    "[0]",
	} {
		if got := diag.DisplayPath(path); got != want {
			t.Errorf("DisplayPath(%q) = %q, want %q", path, got, want)
		}
	}
	for seg, want := range map[string]bool{"0": true, "12": true, "": false, "1a": false, "-1": false} {
		if got := diag.IsIndex(seg); got != want {
			t.Errorf("IsIndex(%q) = %v, want %v", seg, got, want)
		}
	}
}

func TestParentAndJoinPath(t *testing.T) {
	for _, tt := range []struct{ parent, seg, path string }{
		{"", "nats", "nats"},
		{"nats", "url", "nats.url"},
		{"pipelines", "0", "pipelines.0"},
		{"pipelines.0.operators.1.fold.on", "order-placed", "pipelines.0.operators.1.fold.on.order-placed"},
	} {
		if got := diag.JoinPath(tt.parent, tt.seg); got != tt.path {
			t.Errorf("JoinPath(%q, %q) = %q, want %q", tt.parent, tt.seg, got, tt.path)
		}
		if got := diag.ParentPath(tt.path); got != tt.parent {
			t.Errorf("ParentPath(%q) = %q, want %q", tt.path, got, tt.parent)
		}
	}
}
