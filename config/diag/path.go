package diag

import "strings"

// DisplayPath turns a field path into the form shown in messages: pipelines.0.batch becomes
// pipelines[0].batch, and "" the top level.
func DisplayPath(path string) string {
	if path == "" {
		return "the top level"
	}
	var b strings.Builder
	for i, seg := range strings.Split(path, ".") {
		if IsIndex(seg) {
			b.WriteString("[" + seg + "]")
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// IsIndex reports whether a field path segment is a list index: not empty, all digits.
func IsIndex(seg string) bool {
	if seg == "" {
		return false
	}
	for _, r := range seg {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// ParentPath drops the last segment of a field path; "" for a path of one segment.
func ParentPath(p string) string {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// JoinPath appends seg, a key or a list index, to the field path p.
func JoinPath(p, seg string) string {
	if p == "" {
		return seg
	}
	return p + "." + seg
}
