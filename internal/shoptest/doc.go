// Package shoptest is a test workload with its oracle: shop events folded into carts, a
// derived event on each user's first order, and malformed events that must be dead letters.
// The oracle is plain Go, independent of the code under test.
package shoptest
