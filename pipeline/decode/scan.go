package decode

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// members validates a JSON object strictly (RFC 8259) in one pass while it hands out its
// top-level members, without building a tree: the decoder converts only the values it needs.
// Text that encoding/json would take differently from the way the decoder converts it
// (invalid UTF-8, which encoding/json replaces; escaped UTF-16 surrogates; nesting deeper than
// maxNesting) is not an error here but sets odd, and the decoder leaves such a payload to
// encoding/json, as it does every payload that fails.
type members struct {
	b     []byte
	i     int
	first bool
	// bad is set when the text is not a JSON object; odd when it needs encoding/json.
	bad, odd bool
}

// maxNesting bounds the depth of the values the walk checks; deeper ones go to encoding/json.
const maxNesting = 250 // below fastjson's MaxDepth, which converts nested values

// reset starts a walk over b; false when b does not open with an object.
func (s *members) reset(b []byte) bool {
	*s = members{b: b, i: skipWS(b, 0), first: true}
	if s.i >= len(b) || b[s.i] != '{' {
		s.bad = true
		return false
	}
	s.i++
	return true
}

// next returns the next member: its key as written between the quotes (escapes left as they
// are, keyEsc set when there is one) and the text of its value. ok is false after the last
// member, or at the first error (s.bad or s.odd set).
func (s *members) next() (key, val []byte, keyEsc, ok bool) {
	b := s.b
	i := skipWS(b, s.i)
	if i >= len(b) {
		s.bad = true
		return nil, nil, false, false
	}
	if b[i] == '}' {
		if skipWS(b, i+1) != len(b) {
			s.bad = true // text after the object
		}
		return nil, nil, false, false
	}
	if !s.first {
		if b[i] != ',' {
			s.bad = true
			return nil, nil, false, false
		}
		i = skipWS(b, i+1)
	}
	s.first = false
	if i >= len(b) || b[i] != '"' {
		s.bad = true
		return nil, nil, false, false
	}
	end, esc := s.str(i)
	if s.bad || s.odd {
		return nil, nil, false, false
	}
	key, keyEsc = b[i+1:end-1], esc
	i = skipWS(b, end)
	if i >= len(b) || b[i] != ':' {
		s.bad = true
		return nil, nil, false, false
	}
	start := skipWS(b, i+1)
	s.i = s.value(start, 1)
	if s.bad || s.odd {
		return nil, nil, false, false
	}
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

// value checks the value that starts at b[i], at nesting depth, and returns the index after it.
func (s *members) value(i, depth int) int {
	b := s.b
	if i >= len(b) {
		s.bad = true
		return i
	}
	switch c := b[i]; {
	case c == '"':
		end, _ := s.str(i)
		return end
	case c == '{' || c == '[':
		if depth >= maxNesting {
			s.odd = true
			return i
		}
		return s.container(i, depth)
	case c == '-' || c >= '0' && c <= '9':
		return s.number(i)
	case c == 't':
		return s.literal(i, "true")
	case c == 'f':
		return s.literal(i, "false")
	case c == 'n':
		return s.literal(i, "null")
	}
	s.bad = true
	return i
}

// container checks the object or array that opens at b[i].
func (s *members) container(i, depth int) int {
	b := s.b
	closer := byte(']')
	if b[i] == '{' {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1
	}
	for {
		if closer == '}' {
			if i >= len(b) || b[i] != '"' {
				s.bad = true
				return i
			}
			i, _ = s.str(i)
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				s.bad = true
				return i
			}
			i = skipWS(b, i+1)
		}
		i = skipWS(b, s.value(i, depth+1))
		if s.bad || s.odd {
			return i
		}
		if i >= len(b) {
			s.bad = true
			return i
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case closer:
			return i + 1
		default:
			s.bad = true
			return i
		}
	}
}

// str checks the string that opens at b[i] and returns the index after it, and whether it
// holds an escape.
func (s *members) str(i int) (end int, esc bool) {
	b := s.b
	j := i + 1
	for {
		// Eight plain bytes at a time: no quote, backslash, control byte or non-ASCII.
		for j+8 <= len(b) && plain8(binary.LittleEndian.Uint64(b[j:])) {
			j += 8
		}
		if j >= len(b) {
			s.bad = true
			return j, esc
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, esc
		case c == '\\':
			esc = true
			if j+1 >= len(b) {
				s.bad = true
				return j, esc
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				r, ok := hex4(b, j+2)
				if !ok {
					s.bad = true
					return j, esc
				}
				if r >= 0xD800 && r <= 0xDFFF {
					s.odd = true // a surrogate: encoding/json pairs or replaces it
				}
				j += 6
			default:
				s.bad = true
				return j, esc
			}
		case c < 0x20:
			s.bad = true
			return j, esc
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				s.odd = true // invalid UTF-8: encoding/json replaces it
			}
			j += size
		}
	}
}

// plain8 tells whether none of the eight bytes of x is a quote, a backslash, below 0x20 or
// above 0x7f.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return (x&highs)|((x-0x20*ones)&^x&highs)|zero(x^('"'*ones))|zero(x^('\\'*ones)) == 0
}

// hex4 reads the four hexadecimal digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// number checks the number at b[i]: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *members) number(i int) int {
	b, start := s.b, i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		s.bad = true
		return i
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			s.bad = true
			return j
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			s.bad = true
			return j
		}
		i = j
		s.checkRange(start, i)
	} else if i-start > 300 {
		s.checkRange(start, i)
	}
	return i
}

// checkRange refuses, as encoding/json does, a number beyond the float64 range, whether or
// not the decoder converts it: only a number with an exponent or hundreds of digits can be.
func (s *members) checkRange(start, end int) {
	num := s.b[start:end]
	if _, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(num), len(num)), 64); err != nil {
		s.bad = true
	}
}

func digits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// literal checks that b[i:] starts with lit.
func (s *members) literal(i int, lit string) int {
	if len(s.b)-i < len(lit) || string(s.b[i:i+len(lit)]) != lit {
		s.bad = true
		return i
	}
	return i + len(lit)
}
