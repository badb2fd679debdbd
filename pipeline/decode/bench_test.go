package decode

import (
	"fmt"
	"testing"

	"github.com/jetfold/jetfold/operators/event"
)

// BenchmarkDecodeNested decodes events whose fields read by the pipeline hold nested objects
// and arrays (converted whole into the field's slot) and a string with escapes.
func BenchmarkDecodeNested(b *testing.B) {
	l := event.NewLayout([]string{"amount", "note", "order", "type", "user_id"})
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"type":"order-placed","user_id":"u%d","amount":%d.5,`+
			`"order":{"id":"o-%d","items":[{"sku":"s%d","qty":2,"price":9.99},{"sku":"s2","qty":1,"price":19.5}],`+
			`"address":{"city":"Z\u00fcrich","zip":"80%02d"},"gift":false,"coupon":null},`+
			`"note":"line one\nline \"two\"","ts":"2026-01-01T00:00:00Z"}`, i, i, i, i%7, i)
	}
	benchDecode(b, l, payloads)
}

// BenchmarkDecodeFlat decodes the flat events of `processor bench` (no nested value): the
// common case, for comparison.
func BenchmarkDecodeFlat(b *testing.B) {
	l := event.NewLayout([]string{"amount", "type", "user_id"})
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"type":"order-placed","user_id":"u%d","amount":%d.5,"order_id":"o-%d","ts":"2026-01-01T00:00:00Z"}`, i, i, i)
	}
	benchDecode(b, l, payloads)
}

// benchDecode decodes payloads in turn into the fields of layout l.
func benchDecode(b *testing.B, l *event.Layout, payloads [][]byte) {
	d := New("json", l, nil)
	var ev event.Event
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := d.Decode(&ev, payloads[i%len(payloads)], nil); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
