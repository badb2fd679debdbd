package pipeline

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jetfold/jetfold/operators"
)

// definitions returns, per projection that p's operators write, their configuration as
// canonical JSON (keys sorted): what the checkpoint keeps to notice a changed pipeline.
func (p *Pipeline) definitions() map[string]string {
	raw := map[string][]any{}
	for i, op := range p.ops {
		if pr, ok := op.(operators.Projector); ok {
			raw[pr.Projection()] = append(raw[pr.Projection()], map[string]any(p.rawOps[i]))
		}
	}
	out := make(map[string]string, len(raw))
	for proj, ops := range raw {
		b, err := json.Marshal(ops)
		if err != nil {
			continue // YAML values always encode; a definition that does not is not compared
		}
		out[proj] = string(b)
	}
	return out
}

// definitionChange is what changed in the definition of one projection.
type definitionChange struct {
	projection, what string
}

// changedDefinitions compares the definitions of a checkpoint (old; nil for one written
// before they were kept) with the pipeline's, and describes each change: of a fold, the
// fields initial gained or lost and the handlers added, removed or changed.
func changedDefinitions(old, cur map[string]string) []definitionChange {
	var out []definitionChange
	for _, proj := range slices.Sorted(maps.Keys(cur)) {
		was, ok := old[proj]
		if !ok || was == cur[proj] {
			continue
		}
		out = append(out, definitionChange{projection: proj, what: describeChange(was, cur[proj])})
	}
	return out
}

// describeChange says what differs between two definitions of a projection.
func describeChange(was, now string) string {
	var a, b []map[string]any
	if json.Unmarshal([]byte(was), &a) != nil || json.Unmarshal([]byte(now), &b) != nil {
		return "its operators changed"
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d operators write it, %d before", len(b), len(a))
	}
	var parts []string
	for i := range b {
		fa, oka := a[i]["fold"].(map[string]any)
		fb, okb := b[i]["fold"].(map[string]any)
		if !oka || !okb {
			if fmt.Sprint(a[i]) != fmt.Sprint(b[i]) {
				parts = append(parts, fmt.Sprintf("operator %d changed", i+1))
			}
			continue
		}
		ia, _ := fa["initial"].(map[string]any)
		ib, _ := fb["initial"].(map[string]any)
		parts = append(parts, keyChanges("initial gains", "initial loses", ia, ib)...)
		ha, _ := fa["on"].(map[string]any)
		hb, _ := fb["on"].(map[string]any)
		parts = append(parts, keyChanges("new handler of", "no handler of", ha, hb)...)
		parts = append(parts, valueChanges("handler of %s changed", ha, hb)...)
		parts = append(parts, valueChanges("initial %s changed", ia, ib)...)
		if fmt.Sprint(fa["handler"]) != fmt.Sprint(fb["handler"]) {
			parts = append(parts, "handler changed")
		}
	}
	if len(parts) == 0 {
		return "its operators changed"
	}
	return strings.Join(parts, "; ")
}

// keyChanges lists the keys b has and a lacks (as gained) and the reverse (as lost).
func keyChanges(gained, lost string, a, b map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			out = append(out, gained+" "+k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if _, ok := b[k]; !ok {
			out = append(out, lost+" "+k)
		}
	}
	return out
}

// valueChanges lists the keys a and b share whose values differ, each as format with the key.
func valueChanges(format string, a, b map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if v, ok := a[k]; ok && fmt.Sprint(v) != fmt.Sprint(b[k]) {
			out = append(out, fmt.Sprintf(format, k))
		}
	}
	return out
}
