package streams

import (
	"strings"
	"testing"
)

func TestEncodeKey(t *testing.T) {
	tests := []struct{ key, want string }{
		{"user-42", "user-42"},
		{"a.b/c=d_e", "a.b/c=d_e"},
		{"user 42", "_b64.dXNlciA0Mg"},
		{".lead", "_b64.LmxlYWQ"},
		{"a..b", "_b64.YS4uYg"},
		{"_b64.x", "_b64.X2I2NC54"},
		{"ä", "_b64.w6Q"},
		{"a*", "_b64.YSo"},
	}
	for _, tt := range tests {
		if got := EncodeKey(tt.key); got != tt.want {
			t.Errorf("EncodeKey(%q) = %q, want %q", tt.key, got, tt.want)
		}
		if back, err := DecodeKey(EncodeKey(tt.key)); err != nil || back != tt.key {
			t.Errorf("DecodeKey(EncodeKey(%q)) = %q, %v", tt.key, back, err)
		}
	}
}

// FuzzKey: every key encodes to a valid KV key and decodes back to itself.
func FuzzKey(f *testing.F) {
	for _, s := range []string{"user-1", "", " ", "_b64.", "a.b", "..", "日本", "a\x00b", "$KV"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if key == "" {
			return
		}
		enc := EncodeKey(key)
		if !validKey(enc) {
			t.Fatalf("EncodeKey(%q) = %q is not a valid KV key", key, enc)
		}
		back, err := DecodeKey(enc)
		if err != nil || back != key {
			t.Fatalf("round trip of %q: %q, %v", key, back, err)
		}
		if strings.HasPrefix(key, encodedPrefix) && enc == key {
			t.Fatalf("a key that looks encoded passed unchanged: %q", key)
		}
	})
}
