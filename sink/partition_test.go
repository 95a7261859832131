package sink

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The partition of a key must be the one Kafka's default partitioner (and kgo's, and
// Debezium's producer) chooses.
func TestPartitionMatchesKafka(t *testing.T) {
	ref := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for i := range 20000 {
		key := []byte(fmt.Sprintf(`{"id":%d}`, i*7919)[:1+i%12])
		for _, n := range []int32{2, 3, 12, 100} {
			if got, want := Partition(key, n), int32(ref.Partition(&kgo.Record{Key: key}, int(n))); got != want {
				t.Fatalf("key %q, %d partitions: got %d, want %d", key, n, got, want)
			}
		}
	}
}
