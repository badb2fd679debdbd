// Package event holds what a pipeline's operators work on: the [Event] in hand, the per-key
// state as a [Record], and the effects an operator stages on the event ([Write], [Output]).
//
// An event's fields may be held in slots of a [Layout] instead of a map, and a record's in
// slots of a [Shape]: the decoder and the folds then read and write them by index, without
// hashing names or boxing numbers. Both read like maps to everything else ([Event.FieldMap],
// [Record.Map]).
package event
