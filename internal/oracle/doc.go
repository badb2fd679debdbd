// Package oracle is a plain-Go reference model of the stateful operators window, timeout and
// dedupe, written from their specification and independent of the operators' code. Tests
// run the real operators on the same events and compare their KV state, derived events and
// dead letters with what this package computes. It favours being obviously correct over
// speed: a window keeps the events applied to it and computes its value from them.
//
// Every model reads one slice of [Event] in stream order and steps through it the same way.
// For each event that is [Event.Valid] (it decoded and has a valid time):
//
//  1. the watermark moves to the event's time, if that is later: the watermark is the
//     greatest event time of every valid event read so far, whether or not it reaches the
//     operator (filtered and duplicate events included);
//  2. what the watermark makes due happens: windows close (and retained closed windows
//     expire), timers fire, remembered ids are forgotten;
//  3. the event itself is applied, if it reaches the operator ([Event.Reaches]).
//
// Events that are not valid are skipped entirely. Each model documents its own rules, in
// particular where the specification left a choice open.
package oracle
