package casetest

import (
	"fmt"
	"io"
	"strings"

	"github.com/jetfold/jetfold/config/diag"
)

// Mismatch is one difference between what a case expects and what the pipelines did.
type Mismatch struct {
	// Pos is the place of the expectation; for something no expectation covers, that of its
	// section (a projection's name, derived:, dead_letters:).
	Pos diag.Pos
	// What says what differs, such as "projection carts, key user-1: value differs".
	What string
	// Expected and Actual show the two sides, as JSON or in words; empty when a side is not
	// shown.
	Expected, Actual string
	// Details are lines that say more: the members that differ when both sides are objects,
	// the dead letters an expectation counted.
	Details []string
}

// Check compares a case's expectations x with what the pipelines did, a, and returns the
// differences, in the order of the expectations (what nothing expected after the rest of
// its section). Projection values and derived events' data are compared as JSON: objects
// whatever the order of their members, numbers within a relative 1e-9; members of a
// projection value whose names start with "_" are ignored unless x names them.
func Check(x Expect, a Actual) []Mismatch {
	var out []Mismatch
	out = append(out, checkProjections(x, a)...)
	if x.CheckDerived {
		out = append(out, checkDerived(x, a)...)
	}
	if x.CheckDeadLetters {
		out = append(out, checkDeadLetters(x, a)...)
	}
	return out
}

func checkProjections(x Expect, a Actual) []Mismatch {
	var out []Mismatch
	for _, pe := range x.Projections {
		values := map[string]any{}
		var order []string
		for _, p := range a.Projections {
			if p.Name != pe.Name {
				continue
			}
			for _, kv := range p.Keys {
				values[kv.Key] = jsonOrString(kv.Value)
				order = append(order, kv.Key)
			}
		}
		listed := map[string]bool{}
		for _, ke := range pe.Keys {
			listed[ke.Key] = true
			what := fmt.Sprintf("projection %s, key %s", pe.Name, ke.Key)
			got, ok := values[ke.Key]
			switch {
			case ke.Value == nil && ok:
				out = append(out, Mismatch{Pos: ke.Pos, What: what + ": expected no value",
					Actual: jsonText(withoutHidden(got, nil))})
			case ke.Value == nil:
			case !ok:
				out = append(out, Mismatch{Pos: ke.Pos, What: what + ": missing",
					Expected: jsonText(jsonOrString(ke.Value))})
			default:
				want := jsonOrString(ke.Value)
				got = withoutHidden(got, want)
				if !equal(want, got) {
					out = append(out, Mismatch{Pos: ke.Pos, What: what + ": value differs",
						Expected: jsonText(want), Actual: jsonText(got), Details: fieldDiffs(want, got)})
				}
			}
		}
		for _, k := range order {
			if !listed[k] {
				out = append(out, Mismatch{Pos: pe.Pos, What: fmt.Sprintf("projection %s, key %s: not expected", pe.Name, k),
					Actual: jsonText(withoutHidden(values[k], nil))})
			}
		}
	}
	return out
}

// derivedMatches reports whether the derived event d meets x.
func derivedMatches(x DerivedExpect, d Derived) bool {
	return x.Subject == d.Subject && (x.Type == "" || x.Type == d.Type) &&
		(x.Data == nil || equal(jsonOrString(x.Data), jsonOrString(d.Data)))
}

func checkDerived(x Expect, a Actual) []Mismatch {
	used := make([]bool, len(a.Derived))
	var missing []DerivedExpect
	for _, de := range x.Derived {
		found := false
		for i, d := range a.Derived {
			if !used[i] && derivedMatches(de, d) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			missing = append(missing, de)
		}
	}
	var out []Mismatch
	for _, de := range missing {
		// An event on the same subject that matched nothing is most likely this one, wrong.
		other := -1
		for i, d := range a.Derived {
			if !used[i] && d.Subject == de.Subject {
				other = i
				break
			}
		}
		m := Mismatch{Pos: de.Pos, What: "derived event " + de.Subject + ": missing", Expected: showDerived(de.Type, de.Data)}
		if other >= 0 {
			used[other] = true
			d := a.Derived[other]
			m.What = "derived event " + de.Subject + ": differs"
			m.Actual = showDerived(typeShown(de.Type, d.Type), d.Data)
			if de.Data != nil {
				m.Details = fieldDiffs(jsonOrString(de.Data), jsonOrString(d.Data))
			}
			if de.Type != "" && de.Type != d.Type {
				m.Details = append(m.Details, fmt.Sprintf("type: expected %s, actual %s", de.Type, d.Type))
			}
		}
		out = append(out, m)
	}
	for i, d := range a.Derived {
		if !used[i] {
			out = append(out, Mismatch{Pos: x.DerivedPos, What: fmt.Sprintf("derived event %s (pipeline %s): not expected", d.Subject, d.Pipeline),
				Actual: showDerived("", d.Data)})
		}
	}
	return out
}

// typeShown is the actual type to show: when the expectation names one.
func typeShown(want, got string) string {
	if want == "" {
		return ""
	}
	return got
}

// showDerived shows a derived event's type (when given) and data.
func showDerived(typ string, data []byte) string {
	s := "data "
	if data == nil {
		s = "any data"
	} else {
		s += jsonText(jsonOrString(data))
	}
	if typ != "" {
		s = "type " + typ + ", " + s
	}
	return s
}

func checkDeadLetters(x Expect, a Actual) []Mismatch {
	var out []Mismatch
	matched := make([]bool, len(a.DeadLetters))
	for _, de := range x.DeadLetters {
		var which []string
		for i, d := range a.DeadLetters {
			if de.matches(d) {
				matched[i] = true
				which = append(which, describeLetter(d))
			}
		}
		if len(which) != de.Count {
			out = append(out, Mismatch{Pos: de.Pos, What: "dead letters with " + de.describe(),
				Expected: fmt.Sprint(de.Count), Actual: fmt.Sprint(len(which)), Details: which})
		}
	}
	for i, d := range a.DeadLetters {
		if !matched[i] {
			out = append(out, Mismatch{Pos: x.DeadLettersPos, What: "dead letter not expected", Actual: describeLetter(d)})
		}
	}
	return out
}

func describeLetter(d DeadLetter) string {
	return fmt.Sprintf("pipeline %s, subject %s, reason %s", d.Pipeline, d.Subject, quote(d.Reason))
}

// jsonOrString parses data as JSON, or takes it as a string when it is not JSON (a
// payload as it was sent).
func jsonOrString(data []byte) any {
	v, err := parseJSON(data)
	if err != nil {
		return string(data)
	}
	return v
}

// WriteReport writes r as the test command shows it: "PASS name (0.42s)", or "FAIL name"
// followed by the error or each mismatch, indented, at its place in the case file.
func (r Result) WriteReport(w io.Writer) {
	if r.Passed() {
		fmt.Fprintf(w, "PASS %s (%.2fs)\n", r.Case.Name, r.Duration.Seconds())
		return
	}
	fmt.Fprintf(w, "FAIL %s\n", r.Case.Name)
	r.WriteDiff(w)
}

// WriteDiff writes why r failed: its error, or its mismatches, one block each.
func (r Result) WriteDiff(w io.Writer) {
	if r.Err != nil {
		fmt.Fprintf(w, "    %s: %s\n", r.Case.Pos, indentLines(r.Err.Error(), "    "))
		return
	}
	for _, m := range r.Mismatches {
		fmt.Fprintf(w, "    %s: %s\n", m.Pos, m.What)
		if m.Expected != "" {
			fmt.Fprintf(w, "        expected: %s\n", m.Expected)
		}
		if m.Actual != "" {
			fmt.Fprintf(w, "        actual:   %s\n", m.Actual)
		}
		for _, d := range m.Details {
			fmt.Fprintf(w, "        - %s\n", d)
		}
	}
}

// indentLines indents the lines of s after the first.
func indentLines(s, indent string) string {
	return strings.ReplaceAll(s, "\n", "\n"+indent)
}
