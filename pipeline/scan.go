package pipeline

import "bytes"

// members walks the top-level members of a JSON object that is already known to be valid JSON
// (fastjson.Validate), without building a tree: the decoder converts only the values it
// needs. It does not validate; on text that is not valid JSON its results are meaningless.
type members struct {
	b []byte
	i int
}

// reset starts a walk over b; false when b is not an object.
func (s *members) reset(b []byte) bool {
	s.b, s.i = b, skipWS(b, 0)
	if s.i >= len(b) || b[s.i] != '{' {
		return false
	}
	s.i++
	return true
}

// next returns the next member: its key as written between the quotes (escapes left as they
// are, keyEsc set when there is one) and the text of its value. ok is false after the last.
func (s *members) next() (key, val []byte, keyEsc, ok bool) {
	b := s.b
	i := skipWS(b, s.i)
	if i >= len(b) || b[i] == '}' {
		return nil, nil, false, false
	}
	if b[i] == ',' {
		i = skipWS(b, i+1)
	}
	end, esc := stringEnd(b, i)
	key, keyEsc = b[i+1:end-1], esc
	i = skipWS(b, end)
	i = skipWS(b, i+1) // the colon
	start := i
	s.i = valueEnd(b, i)
	return key, b[start:s.i], keyEsc, true
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// stringEnd returns the index after the string that opens at b[i], and whether it holds an
// escape.
func stringEnd(b []byte, i int) (end int, esc bool) {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b), esc // not valid JSON: cannot happen after validation
		}
		q := j + k
		n := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, esc || bytes.IndexByte(b[i+1:q], '\\') >= 0
		}
		esc = true
		j = q + 1
	}
}

// valueEnd returns the index after the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				j, _ = stringEnd(b, j)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return len(b)
	default: // a number, true, false or null
		for j := i; j < len(b); j++ {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
		}
		return len(b)
	}
}
