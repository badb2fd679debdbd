package diag

import (
	"fmt"
	"strings"
)

// Suggest returns the candidate closest to s, ignoring case, when it is close enough to be a
// likely typo: at most one edit per three characters of the shorter, and at least one.
func Suggest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := max(1, min(len(s), len(best))/3)
	if bestD < 0 || bestD > limit {
		return "", false
	}
	return best, true
}

// editDistance is the optimal string alignment distance between a and b, in bytes: the
// Levenshtein distance that also counts swapping two adjacent characters as one edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// HintFor suggests a close match for s among valid ("did you mean x?"), or lists valid under
// label; "" when valid is empty.
func HintFor(s string, valid []string, label string) string {
	if m, ok := Suggest(s, valid); ok {
		return "did you mean " + m + "?"
	}
	if len(valid) == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %s", label, strings.Join(valid, ", "))
}
