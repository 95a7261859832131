package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/procon-cdc/procon/pg"
	"github.com/procon-cdc/procon/sink"
	"github.com/procon-cdc/procon/snapshot"
)

// cmdDrop removes what procon-cdc created for a configuration: the replication slot and the
// publication, and with --topics the topics of the configured relations. It is how a pipeline
// is retired; a slot left behind makes PostgreSQL keep WAL forever.
func cmdDrop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var topics bool
	cfg, err := loadConfig("drop", args, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&topics, "topics", false, "also delete the Kafka topics of the configured relations (and the progress topic of kafka.delivery: exactly_once)")
	})
	if err != nil {
		return err
	}
	conn, err := pg.Connect(ctx, cfg.Postgres.DSN, "procon-cdc drop")
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	tag, err := conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, cfg.Postgres.Slot)
	if err != nil {
		return fmt.Errorf("drop slot %s (stop the running procon-cdc first): %w", cfg.Postgres.Slot, err)
	}
	fmt.Fprintf(stdout, "slot %s: %d dropped\n", cfg.Postgres.Slot, tag.RowsAffected())
	if n, err := snapshot.Forget(ctx, conn, cfg.Postgres.Slot); err != nil {
		return err
	} else if n > 0 {
		fmt.Fprintf(stdout, "snapshot progress of slot %s: %d snapshot(s) forgotten\n", cfg.Postgres.Slot, n)
	}
	if cfg.Postgres.PublicationAutocreate != "disabled" {
		if _, err := conn.Exec(ctx, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{cfg.Postgres.Publication}.Sanitize()); err != nil {
			return fmt.Errorf("drop publication %s: %w", cfg.Postgres.Publication, err)
		}
		fmt.Fprintf(stdout, "publication %s: dropped\n", cfg.Postgres.Publication)
	}
	if !topics {
		return nil
	}
	scfg, err := sink.ConfigFrom(&cfg.Kafka, nil)
	if err != nil {
		return err
	}
	adm, err := sink.NewAdmin(ctx, scfg)
	if err != nil {
		return err
	}
	defer adm.Close()
	var names []string
	for _, key := range cfg.SortedRelations() {
		names = append(names, cfg.Relations[key].Topic)
	}
	if cfg.Kafka.ExactlyOnce() {
		names = append(names, cfg.Kafka.Transactions.ProgressTopic) // the position of the slot just dropped
	}
	results, err := adm.DeleteTopics(ctx, names...)
	if err != nil {
		return err
	}
	for _, name := range names {
		status := "deleted"
		if err, ok := results[name]; !ok {
			status = "no answer from the cluster"
		} else if err != nil {
			status = err.Error()
		}
		fmt.Fprintf(stdout, "topic %s: %s\n", name, status)
	}
	return nil
}
