package sink

// Partition returns the partition Kafka's default partitioner chooses for key among
// partitions: murmur2 of the key, sign bit cleared, modulo the count. A record without key
// goes to partition 0.
func Partition(key []byte, partitions int32) int32 {
	if key == nil || partitions <= 1 {
		return 0
	}
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is the hash Kafka's Java client partitions keys with. (kgo's partitioner computes the
// same, but asking it allocates a fresh sticky partitioner, with its random source, per call.)
func murmur2(b []byte) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
	)
	h := seed ^ uint32(len(b))
	for ; len(b) >= 4; b = b[4:] {
		k := uint32(b[3])<<24 | uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
		k *= m
		k ^= k >> 24
		k *= m
		h *= m
		h ^= k
	}
	switch len(b) {
	case 3:
		h ^= uint32(b[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(b[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(b[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
