package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// ErrDecode wraps every payload that does not decode.
var ErrDecode = errors.New("payload does not decode")

// decodeEvent turns a payload into the `event` variable. json wants a JSON object; raw gives
// {"data": payload as text}; cloudevents takes the data of a structured-mode envelope, or the
// body of a binary-mode message (its attributes are in the ce-* headers), and fills header
// with the envelope's attributes as ce-* headers.
func decodeEvent(kind string, data []byte, header map[string][]string) (map[string]any, map[string][]string, error) {
	switch kind {
	case "raw":
		return map[string]any{"data": string(data)}, header, nil
	case "cloudevents":
		if len(header["Ce-Specversion"]) > 0 || len(header["ce-specversion"]) > 0 {
			m, err := decodeJSON(data)
			return m, header, err
		}
		var env map[string]any
		if err := json.Unmarshal(data, &env); err != nil {
			return nil, header, fmt.Errorf("%w: %v", ErrDecode, err)
		}
		if _, ok := env["specversion"]; !ok {
			return nil, header, fmt.Errorf("%w: not a CloudEvent (no ce-specversion header, no specversion field)", ErrDecode)
		}
		h := make(map[string][]string, len(header)+len(env))
		for k, v := range header {
			h[k] = v
		}
		for k, v := range env {
			if s, ok := v.(string); ok && k != "data" {
				h["ce-"+k] = []string{s}
			}
		}
		d, ok := env["data"].(map[string]any)
		if !ok {
			return nil, h, fmt.Errorf("%w: CloudEvent data is not a JSON object", ErrDecode)
		}
		return d, h, nil
	default:
		m, err := decodeJSON(data)
		return m, header, err
	}
}

func decodeJSON(data []byte) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: not a JSON object", ErrDecode)
	}
	return m, nil
}

// eventTime converts the value of a `time:` expression: an RFC3339 string (fractions allowed)
// or a number of Unix milliseconds.
func eventTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case string:
		ts, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(t))
		if err != nil {
			return time.Time{}, fmt.Errorf("event time %q: want RFC3339: %w", t, err)
		}
		return ts, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return time.Time{}, fmt.Errorf("event time %v: not a number of milliseconds", t)
		}
		return time.UnixMilli(int64(t)), nil
	case int:
		return time.UnixMilli(int64(t)), nil
	case int64:
		return time.UnixMilli(t), nil
	case time.Time:
		return t, nil
	case nil:
		return time.Time{}, errors.New("event time is nil (missing field?)")
	default:
		return time.Time{}, fmt.Errorf("event time: got %T, want RFC3339 text or Unix milliseconds", v)
	}
}
