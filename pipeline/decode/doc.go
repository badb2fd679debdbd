// Package decode turns message payloads into events: JSON objects (validated strictly, as
// encoding/json would, while their top-level members are walked without building a tree, and
// only the fields some expression reads converted, into the slots of an [event.Layout]),
// CloudEvents (structured or binary mode) and raw text; it also decodes event times and
// projection values read back from KV.
package decode
