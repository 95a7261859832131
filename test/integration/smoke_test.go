package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/procon-cdc/procon/test/testenv"
)

// TestSmokeLogicalSlot proves that the cluster decodes WAL with pgoutput and that pglogrepl
// reads it: a committed insert arrives as Begin, Relation, Insert, Commit.
func TestSmokeLogicalSlot(t *testing.T) {
	env := testenv.Get(t)
	db := env.Database(t)
	db.Exec(t, `CREATE TABLE smoke (id bigint PRIMARY KEY, note text)`)
	db.Exec(t, `CREATE PUBLICATION smoke_pub FOR TABLE smoke`)
	ctx := testenv.Context(t, time.Minute)

	conn, err := pgconn.Connect(ctx, db.ReplicationDSN())
	if err != nil {
		t.Fatalf("replication connection: %v", err)
	}
	defer conn.Close(context.Background())
	slot := testenv.Name(t, "slot")
	if _, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{}); err != nil {
		t.Fatalf("create slot: %v", err)
	}
	db.Exec(t, `INSERT INTO smoke VALUES (1, 'hello')`)
	err = pglogrepl.StartReplication(ctx, conn, slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names 'smoke_pub'"},
	})
	if err != nil {
		t.Fatalf("start replication: %v", err)
	}

	var kinds []string
	for len(kinds) < 4 {
		switch m := nextWALMessage(ctx, t, conn).(type) {
		case *pglogrepl.BeginMessage:
			kinds = append(kinds, "begin")
		case *pglogrepl.RelationMessage:
			kinds = append(kinds, "relation "+m.RelationName)
		case *pglogrepl.InsertMessage:
			got := fmt.Sprintf("insert %s %s", m.Tuple.Columns[0].Data, m.Tuple.Columns[1].Data)
			if got != "insert 1 hello" {
				t.Errorf("got %q, want %q", got, "insert 1 hello")
			}
			kinds = append(kinds, "insert")
		case *pglogrepl.CommitMessage:
			kinds = append(kinds, "commit")
		}
	}
	want := []string{"begin", "relation smoke", "insert", "commit"}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", kinds, want)
	}
}

// TestSmokeKafkaProducers round-trips records through an idempotent producer and a
// transactional one; a read_committed consumer sees committed records only.
func TestSmokeKafkaProducers(t *testing.T) {
	env := testenv.Get(t)
	topic := env.Topic(t, 3)
	ctx := testenv.Context(t, time.Minute)

	idem := env.Kafka(t, kgo.RequiredAcks(kgo.AllISRAcks()))
	for i := range 10 {
		rec := &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%3), Value: fmt.Appendf(nil, "idempotent-%d", i)}
		if err := idem.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatalf("idempotent produce: %v", err)
		}
	}

	txn := env.Kafka(t, kgo.TransactionalID(testenv.Name(t, "txn")), kgo.RequiredAcks(kgo.AllISRAcks()))
	for _, commit := range []bool{false, true} {
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			v := fmt.Appendf(nil, "txn-commit=%v-%d", commit, i)
			if err := txn.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("t"), Value: v}).FirstErr(); err != nil {
				t.Fatalf("transactional produce: %v", err)
			}
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction (commit=%v): %v", commit, err)
		}
	}

	recs := env.ReadN(t, topic, 15, 30*time.Second, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	counts := map[string]int{}
	for _, r := range recs {
		switch v := string(r.Value); {
		case len(v) > 10 && v[:10] == "idempotent":
			counts["idempotent"]++
		case len(v) > 15 && v[:15] == "txn-commit=true":
			counts["committed"]++
		default:
			t.Errorf("read_committed consumer got %q", v)
		}
	}
	if counts["idempotent"] != 10 || counts["committed"] != 5 {
		t.Fatalf("got %v, want 10 idempotent and 5 committed records", counts)
	}
}

// TestSmokeSchemaRegistry registers an Avro schema through franz-go's sr client, fetches it back
// by id, and checks that the registry enforces compatibility.
func TestSmokeSchemaRegistry(t *testing.T) {
	env := testenv.Get(t)
	ctx := testenv.Context(t, time.Minute)
	cl, err := sr.NewClient(sr.URLs(env.RegistryURL))
	if err != nil {
		t.Fatal(err)
	}
	subject := testenv.Name(t, "smoke") + "-value"
	t.Cleanup(func() {
		_, _ = cl.DeleteSubject(context.Background(), subject, sr.SoftDelete)
		_, _ = cl.DeleteSubject(context.Background(), subject, sr.HardDelete)
	})
	v1 := `{"type":"record","name":"Smoke","namespace":"procon","fields":[{"name":"id","type":"long"}]}`
	ss, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: v1, Type: sr.TypeAvro})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	got, err := cl.SchemaByID(ctx, ss.ID)
	if err != nil {
		t.Fatalf("schema by id %d: %v", ss.ID, err)
	}
	if got.Type != sr.TypeAvro || !jsonEqual(t, got.Schema, v1) {
		t.Fatalf("schema %d: got %s %q, want AVRO %q", ss.ID, got.Type, got.Schema, v1)
	}
	again, err := cl.CreateSchema(ctx, subject, sr.Schema{Schema: v1, Type: sr.TypeAvro})
	if err != nil || again.ID != ss.ID || again.Version != ss.Version {
		t.Fatalf("registering the same schema again: got id %d version %d (%v), want id %d version %d", again.ID, again.Version, err, ss.ID, ss.Version)
	}

	if r := cl.SetCompatibility(ctx, sr.SetCompatibility{Level: sr.CompatBackward}, subject); r[0].Err != nil {
		t.Fatalf("set compatibility: %v", r[0].Err)
	}
	// A new required field without a default cannot read old data: BACKWARD must refuse it.
	bad := `{"type":"record","name":"Smoke","namespace":"procon","fields":[{"name":"id","type":"long"},{"name":"x","type":"string"}]}`
	_, err = cl.CreateSchema(ctx, subject, sr.Schema{Schema: bad, Type: sr.TypeAvro})
	var re *sr.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 409 {
		t.Fatalf("registering an incompatible schema: got %v, want HTTP 409", err)
	}
}
