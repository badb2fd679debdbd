// Package authtest makes what a test of NATS security needs: nats-servers with JetStream that
// require one authentication method (a password, a token, an NKey, a JWT in operator mode, a
// TLS client certificate), and the credentials a client presents to them, as values and as
// files.
//
// Every secret a helper makes is also listed in [Secrets], so that a test can check that
// none of them appears in logs, errors or HTTP answers.
package authtest
