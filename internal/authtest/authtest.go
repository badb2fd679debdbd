package authtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/jetfold/jetfold/internal/natstest"
)

// Secrets are the secret values a test made, by what they are ("password", "creds jwt",
// ...). [Secrets.Find] tells whether one of them appears in a text.
type Secrets map[string]string

// Add records the secret value under what, and returns value.
func (s Secrets) Add(what, value string) string {
	s[what] = value
	return value
}

// Find returns what the first secret found in text is ("" when none is), in the order of the
// names, so that a failure names the same secret each time.
func (s Secrets) Find(text string) string {
	for _, what := range slices.Sorted(maps.Keys(s)) {
		if v := s[what]; v != "" && strings.Contains(text, v) {
			return what
		}
	}
	return ""
}

// Server starts a nats-server with JetStream that requires what opts requires, as
// [natstest.ServerWith] does (loopback, a random port, a temporary store), shut down when the
// test ends.
func Server(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	return natstest.ServerWith(t, opts)
}

// UserPassword returns the options of a server that requires the user name and password.
func UserPassword(user, password string) *server.Options {
	return &server.Options{Users: []*server.User{{Username: user, Password: password}}}
}

// Token returns the options of a server that requires the token.
func Token(token string) *server.Options {
	return &server.Options{Authorization: token}
}

// NKey is a user NKey: its public key, which a server trusts, and its seed, the secret.
type NKey struct {
	Public string
	Seed   string
}

// NewNKey makes a user NKey and records its seed in secrets under "nkey seed".
func NewNKey(t testing.TB, secrets Secrets) NKey {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, seed := keys(t, kp)
	return NKey{Public: pub, Seed: secrets.Add("nkey seed", seed)}
}

// Options returns the options of a server that requires this NKey.
func (k NKey) Options() *server.Options {
	return &server.Options{Nkeys: []*server.NkeyUser{{Nkey: k.Public}}}
}

// WriteSeed writes the seed to a file named name in dir, readable by its owner only, and
// returns its path.
func (k NKey) WriteSeed(t testing.TB, dir, name string) string {
	t.Helper()
	return WriteFile(t, dir, name, k.Seed+"\n")
}

// Operator is a NATS operator with a system account and one account with JetStream enabled,
// for a server in operator mode that resolves the accounts from memory.
type Operator struct {
	claims  *jwt.OperatorClaims
	sysPub  string
	account nkeys.KeyPair
	accPub  string
	jwts    map[string]string // account public key -> its JWT
}

// NewOperator makes an operator, its system account and an account with JetStream.
func NewOperator(t testing.TB) *Operator {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	if err != nil {
		t.Fatal(err)
	}
	opub, _ := keys(t, okp)
	o := &Operator{jwts: map[string]string{}}
	sys := newAccount(t)
	o.sysPub, _ = keys(t, sys)
	o.claims = jwt.NewOperatorClaims(opub)
	o.claims.SystemAccount = o.sysPub
	if _, err := o.claims.Encode(okp); err != nil { // sets the issuer, as a signed operator JWT has
		t.Fatal(err)
	}
	o.jwts[o.sysPub] = encode(t, jwt.NewAccountClaims(o.sysPub), okp)
	o.account = newAccount(t)
	o.accPub, _ = keys(t, o.account)
	ac := jwt.NewAccountClaims(o.accPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	o.jwts[o.accPub] = encode(t, ac, okp)
	return o
}

// Options returns the options of a server in operator mode that trusts this operator only.
func (o *Operator) Options(t testing.TB) *server.Options {
	t.Helper()
	r := &server.MemAccResolver{}
	for pub, j := range o.jwts {
		if err := r.Store(pub, j); err != nil {
			t.Fatal(err)
		}
	}
	return &server.Options{TrustedOperators: []*jwt.OperatorClaims{o.claims}, SystemAccount: o.sysPub, AccountResolver: r}
}

// User makes a user of the account with JetStream, writes its credentials file (the user's
// JWT and NKey seed, as nsc writes them) to a file named name in dir and returns its path.
// The JWT and the seed are recorded in secrets under "creds jwt" and "creds seed", with the
// prefix given (to tell several users apart).
func (o *Operator) User(t testing.TB, secrets Secrets, prefix, dir, name string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, seed := keys(t, ukp)
	ujwt := encode(t, jwt.NewUserClaims(upub), o.account)
	creds, err := jwt.FormatUserConfig(ujwt, []byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	secrets.Add(prefix+"creds jwt", ujwt)
	secrets.Add(prefix+"creds seed", seed)
	return WriteFile(t, dir, name, string(creds))
}

// PKI is a certificate authority with a server certificate for 127.0.0.1 and localhost and a
// client certificate, all written as PEM files.
type PKI struct {
	// CAFile, CertFile and KeyFile are the CA certificate and the client's certificate and
	// key, for the client's configuration.
	CAFile, CertFile, KeyFile string
	// ServerTLS is the server side: its certificate, and the CA as the one that signs the
	// client certificates it accepts (which it requires and verifies).
	ServerTLS *tls.Config
}

// NewPKI makes a CA, a server and a client certificate, writes the client's files (ca.pem,
// client.pem, client-key.pem) to dir and records the client key's PEM body in secrets under
// prefix+"client key".
func NewPKI(t testing.TB, secrets Secrets, prefix, dir string) *PKI {
	t.Helper()
	caKey := newKey(t)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "jetfold test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte) {
		key := newKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		return pair, certPEM, keyPEM
	}
	srvPair, _, _ := leaf(2, "localhost", x509.ExtKeyUsageServerAuth)
	_, clientPEM, clientKeyPEM := leaf(3, "jetfold", x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	secrets.Add(prefix+"client key", pemBody(clientKeyPEM))
	return &PKI{
		CAFile:   WriteFile(t, dir, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))),
		CertFile: WriteFile(t, dir, "client.pem", string(clientPEM)),
		KeyFile:  WriteFile(t, dir, "client-key.pem", string(clientKeyPEM)),
		ServerTLS: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{srvPair},
			ClientCAs:    pool,
			ClientAuth:   tls.RequireAndVerifyClientCert,
		},
	}
}

// Options returns the options of a server that requires TLS and a client certificate that
// this PKI's CA signed.
func (p *PKI) Options() *server.Options {
	return &server.Options{TLS: true, TLSVerify: true, TLSConfig: p.ServerTLS, TLSTimeout: 10}
}

// WriteFile writes content to a file named name in dir, readable by its owner only, and
// returns its path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newAccount makes an account NKey.
func newAccount(t testing.TB) nkeys.KeyPair {
	t.Helper()
	kp, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// keys returns the public key and the seed of kp.
func keys(t testing.TB, kp nkeys.KeyPair) (pub, seed string) {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return pub, string(s)
}

// claims are JWT claims, which their issuer signs.
type claims interface {
	Encode(nkeys.KeyPair) (string, error)
}

// encode signs c with kp.
func encode(t testing.TB, c claims, kp nkeys.KeyPair) string {
	t.Helper()
	s, err := c.Encode(kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newKey makes an ECDSA P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// pemBody returns the first line of base64 of a PEM block: what a leak of the key would show.
func pemBody(p []byte) string {
	lines := strings.Split(string(p), "\n")
	if len(lines) < 2 {
		return string(p)
	}
	return lines[1]
}
