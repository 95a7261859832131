package envelope

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/procon-cdc/procon/replication"
)

// TestReaderEvent checks a snapshot row's envelope: op r, the row in after, and the source
// block Debezium writes for initial rows (txId, lsn, sequence [null, lsn]) and for incremental
// ones (txId and lsn null, sequence set); rows of one table share a source block only while
// it says the same thing.
func TestReaderEvent(t *testing.T) {
	i4 := &replication.Type{Name: "int4", Schema: "pg_catalog", Kind: 'b', Category: 'N'}
	tx := &replication.Type{Name: "text", Schema: "pg_catalog", Kind: 'b', Category: 'S'}
	rel := &replication.Relation{ID: 1, Schema: "public", Table: "t", Key: []int{0}, Columns: []replication.Column{
		{Name: "id", Type: i4, TypeOID: 23, TypeMod: -1, NotNull: true}, {Name: "note", Type: tx, TypeOID: 25, TypeMod: -1}}}
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := NewBuilder(Config{Name: "srv", Database: "db", Version: "v", Topics: map[string]string{"public.t": "srv.public.t"},
		Options: DefaultOptions(), Now: func() time.Time { return fixed }})
	r, err := b.Reader(rel)
	if err != nil {
		t.Fatal(err)
	}
	row := []replication.Datum{{Kind: replication.DatumText, Data: []byte("7")}, {Kind: replication.DatumNull}}
	snapTime := time.Date(2026, 1, 2, 3, 0, 0, 123456000, time.UTC)
	enc := &JSONEncoder{}
	render := func(src ReadSource) (string, string) {
		t.Helper()
		ev, err := r.Read(row, src)
		if err != nil {
			t.Fatal(err)
		}
		k, v, err := enc.Encode(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		return string(k), string(v)
	}
	key, val := render(ReadSource{Marker: "first", Time: snapTime, TxID: 42, LSN: 1000, SeqLSN: 1000})
	if key != `{"id":7}` {
		t.Errorf("key %s", key)
	}
	want := `{"before":null,"after":{"id":7,"note":null},"source":{"version":"v","connector":"postgresql","name":"srv",` +
		`"ts_ms":1767322800123,"snapshot":"first","db":"db","sequence":"[null,\"1000\"]","ts_us":1767322800123456,` +
		`"ts_ns":1767322800123456000,"schema":"public","table":"t","txId":42,"lsn":1000,"xmin":null,"origin":null,` +
		`"origin_lsn":null},"transaction":null,"op":"r","ts_ms":1767323045000,"ts_us":1767323045000000,"ts_ns":1767323045000000000}`
	if val != want {
		t.Errorf("initial row\n got %s\nwant %s", val, want)
	}
	// The next rows say "true": the shared source block must not keep "first".
	if _, val := render(ReadSource{Marker: "true", Time: snapTime, TxID: 42, LSN: 1000, SeqLSN: 1000}); !strings.Contains(val, `"snapshot":"true"`) {
		t.Errorf("second row %s", val)
	}
	_, val = render(ReadSource{Marker: "incremental", Time: snapTime, LastCommit: 900, SeqLSN: 1100})
	if !strings.Contains(val, `"snapshot":"incremental"`) || !strings.Contains(val, `"sequence":"[\"900\",\"1100\"]"`) ||
		!strings.Contains(val, `"txId":null,"lsn":null`) {
		t.Errorf("incremental row %s", val)
	}
}
