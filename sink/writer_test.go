package sink

import (
	"context"
	"math"
	"strings"
	"testing"
)

// A max record size int32 would wrap (2^32 + 1024 becomes 1024, which the client takes) is
// refused before anything connects.
func TestNewRefusesAMaxRecordSizeInt32Wraps(t *testing.T) {
	if math.MaxInt == math.MaxInt32 {
		t.Skip("int is 32 bits: such a size cannot be written")
	}
	big := int64(1)<<32 + 1024
	_, err := New(context.Background(), Config{Brokers: []string{"127.0.0.1:1"}, MaxRecordBytes: int(big)}, nil)
	if err == nil || !strings.Contains(err.Error(), "max record bytes") {
		t.Fatalf("got %v, want the size refused", err)
	}
}
