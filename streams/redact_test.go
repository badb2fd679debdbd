package streams

import (
	"errors"
	"testing"
)

// TestRedact: the user info of each URL of a list is hidden, whether the URL parses or not,
// and a URL without user info is left as it is.
func TestRedact(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no user info", "nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"empty", "", ""},
		{"user and password", "nats://alice:pw@h:4222", "nats://***@h:4222"},
		{"token", "tls://tok@h", "tls://***@h"},
		{"no scheme", "alice:pw@h:4222", "***@h:4222"},
		{"an @ in the password", "nats://alice:p@ss@h", "nats://***@h"},
		{"a / in the password", "nats://alice:p/w@h", "nats://***@h"},
		{"a bad escape", "nats://alice:%zz@h", "nats://***@h"},
		{"list", "nats://a:b@h1:4222, nats://c:d@h2:4222,nats://h3", "nats://***@h1:4222, nats://***@h2:4222,nats://h3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redact(tt.in); got != tt.want {
				t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestCheckURL: a URL that does not parse is [ErrURL], with the reason when the URL holds no
// user info, and without the user info when it does.
func TestCheckURL(t *testing.T) {
	tests := []struct {
		name, in, wantMsg string // wantMsg "": valid
	}{
		{name: "one", in: "nats://127.0.0.1:4222"},
		{name: "list without schemes", in: "127.0.0.1:4222,alice:pw@127.0.0.1:4223"},
		{name: "bad port", in: "nats://127.0.0.1:port", wantMsg: `invalid NATS URL nats://127.0.0.1:port: invalid port ":port" after host`},
		{name: "bad escape in the password", in: "nats://h1,nats://alice:%zzpw@h2", wantMsg: "invalid NATS URL nats://***@h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkURL(tt.in)
			switch {
			case tt.wantMsg == "" && err != nil:
				t.Fatalf("checkURL(%q): %v", tt.in, err)
			case tt.wantMsg == "":
			case !errors.Is(err, ErrURL):
				t.Fatalf("checkURL(%q) = %v, want ErrURL", tt.in, err)
			case err.Error() != tt.wantMsg:
				t.Errorf("checkURL(%q) = %q, want %q", tt.in, err, tt.wantMsg)
			}
		})
	}
}
