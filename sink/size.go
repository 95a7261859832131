package sink

// batchOverhead is what a record batch costs besides its records, as the producer counts it
// against its batch limit (kafka.max_record_bytes): Kafka's v2 batch header (61 bytes: base
// offset, length, leader epoch, magic, CRC, attributes, last offset delta, two timestamps,
// producer id and epoch, base sequence, record count) and the 4-byte length of the records
// field in the produce request. The broker counts the batch without those 4 bytes against the
// topic's max.message.bytes, so a batch the producer lets through fits a topic whose
// max.message.bytes is at least the producer's limit.
const batchOverhead = 4 + 61

// Size is the number of bytes the producer counts for a batch holding r alone (key, value,
// headers, the record's framing and the batch header), which is what it compares with
// kafka.max_record_bytes, before compression: a record with Size(r) above a topic's limit
// (Writer.MaxRecordBytes) is refused. It is the producer's own count for the produce
// versions of Kafka 0.11 to 2.3 and while the version is not known yet; the flexible versions
// of later brokers write the batch length as a varint and count up to 3 bytes less.
func Size(r *Record) int {
	n := 1 + // attributes
		1 + // timestamp delta: 0 for the first record of a batch
		1 + // offset delta: 0
		varintLen(len(r.Key)) + len(r.Key) + // a null key or value (-1) takes one byte, as 0 does
		varintLen(len(r.Value)) + len(r.Value) +
		varintLen(len(r.Headers))
	for _, h := range r.Headers {
		n += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return batchOverhead + varintLen(n) + n
}

// varintLen is the length of n as a zig-zag varint, Kafka's encoding of lengths in records.
func varintLen(n int) int {
	u := uint64(n<<1) ^ uint64(n>>63)
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}
