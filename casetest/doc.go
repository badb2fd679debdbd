// Package casetest runs test cases of pipelines: events in, expected projections, derived events and dead letters out.
//
// Each case runs on an embedded nats-server of its own. A case file (YAML) holds a list of
// cases; `processor test` runs them (see README.md, "Testing pipelines"):
//
//	cases:
//	  - name: first order of a user
//	    events:
//	      SHOP:                                   # a declared stream, which captures the subjects
//	        - subject: shop.order.user-1
//	          data: {type: order-placed, user_id: user-1, order_id: o-1, amount: 30.5, ts: "2026-11-01T09:00:20Z"}
//	          headers: {x-request: r-1}           # optional
//	          time: "2026-11-01T09:00:20Z"        # optional: the ce-time header
//	    expect:
//	      projections:                            # every key of each projection named
//	        carts:
//	          user-1: {items: 0, orders: 1, revenue: 30.5, last_order: o-1}
//	      derived:                                # every derived event, in any order
//	        - subject: shop.derived.first-order.user-1
//	          data: {user_id: user-1, order_id: o-1}
//	      dead_letters: []                        # every dead letter: none
//
// [Engine.Load] reads case files and reports their problems at their place
// (file:line:col), as package config does for the configuration. [Engine.Run] runs one case
// on a fresh embedded server in a temporary directory: it publishes the events, runs the
// pipelines from the start to the end of their streams, reads back the projections, the
// derived events and the dead letters ([Actual]) and compares them with the expectations
// ([Check]). [Engine.RunAll] runs many cases in parallel and reports them in order, and
// [Engine.Update] writes what the pipelines did into a file's expectations (golden files).
//
// Like bench and the commands, the package links nats-server (through streams/embedded);
// the runtime does not.
package casetest
