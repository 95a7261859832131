package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/procon-cdc/procon/metrics"
	"github.com/procon-cdc/procon/test/testenv"
)

// TestMetricsRunAndConsume scrapes a running procon-cdc and procon-cdc consume after a known
// workload: what they count is what was written, applied and committed, and the probes say
// ready.
func TestMetricsRunAndConsume(t *testing.T) {
	runAddr, consumeAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cs := newConsumeSetupWith(t, "metrics: {listen: \""+runAddr+"\"}\n")
	cs.startProcess(t)
	cs.waitSlot(t)
	// 400 inserts, 100 updates and 50 deletes in 30 transactions, of one table only.
	for i := range 20 {
		cs.db.Exec(t, fmt.Sprintf(`INSERT INTO ce_items SELECT g, 1, 'p' || g FROM generate_series(%d, %d) g`, i*20+1, i*20+20))
	}
	for i := range 5 {
		cs.db.Exec(t, fmt.Sprintf(`UPDATE ce_items SET v = v + 1 WHERE id BETWEEN %d AND %d`, i*20+1, i*20+20))
	}
	for i := range 5 {
		cs.db.Exec(t, fmt.Sprintf(`DELETE FROM ce_items WHERE id BETWEEN %d AND %d`, 300+i*10+1, 300+i*10+10))
	}
	const events = 400 + 100 + 50 + 50 // and a tombstone after each delete
	end := cs.currentLSN(t)
	topic := cs.topic("ce_items")
	c := cs.startConsume(t, cs.consumeConfig("", "metrics: {listen: \""+consumeAddr+"\"}\n"))
	cs.waitTablesEqual(t, 2*time.Minute)

	// procon-cdc run: every change produced once, acknowledged, confirmed.
	run := "http://" + runAddr
	testenv.WaitFor(t, time.Minute, "procon-cdc to confirm everything", func() (bool, error) {
		fams := testenv.Metrics(t, run+"/metrics")
		lag, _ := testenv.MetricValue(fams, "procon_replication_lag_seconds")
		return lag == 0 && testenv.MustMetric(t, fams, "procon_transactions_total") >= 30, nil
	})
	fams := testenv.Metrics(t, run+"/metrics")
	if got := testenv.MustMetric(t, fams, "procon_events_produced_total", "relation=public.ce_items", "topic="+topic); got != events {
		t.Errorf("procon_events_produced_total{relation=public.ce_items} = %v, want %d", got, events)
	}
	if got := testenv.MustMetric(t, fams, "procon_kafka_acknowledged_records_total", "topic="+topic); got != events {
		t.Errorf("procon_kafka_acknowledged_records_total{topic=%s} = %v, want %d", topic, got, events)
	}
	if got := testenv.MustMetric(t, fams, "procon_phase", "phase=streaming"); got != 1 {
		t.Errorf("procon_phase{phase=streaming} = %v, want 1", got)
	}
	if got := testenv.MustMetric(t, fams, "procon_commit_to_ack_seconds"); got < 30 {
		t.Errorf("procon_commit_to_ack_seconds observed %v transactions, want at least the 30 written", got)
	}
	// The slot is polled every 5 s, the first time before streaming began.
	testenv.WaitFor(t, 15*time.Second, "the slot's poll to see it active", func() (bool, error) {
		v, _ := testenv.MetricValue(testenv.Metrics(t, run+"/metrics"), "procon_slot_active")
		return v == 1, nil
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := testenv.HTTPGet(t, run+path); code != http.StatusOK {
			t.Errorf("procon-cdc run %s: %d %s", path, code, body)
		}
	}
	var st metrics.Status
	_, body := testenv.HTTPGet(t, run+"/status")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	// The slot's confirmed position trails procon-cdc's by a status interval at most.
	slotLSN := cs.confirmedLSN(t)
	if st.Phase != metrics.PhaseStreaming || !st.Ready || st.Slot != cs.slot || st.EventsProduced != events ||
		uint64(st.ConfirmedLSN) < uint64(end) || uint64(st.ConfirmedLSN) < uint64(slotLSN) {
		t.Errorf("procon-cdc run /status: phase %s ready %v slot %s events %d confirmed %s (want at least the workload's end %s and the slot's %s)\n%s",
			st.Phase, st.Ready, st.Slot, st.EventsProduced, st.ConfirmedLSN, end, slotLSN, body)
	}

	// procon-cdc consume: every event applied once, nothing behind.
	con := "http://" + consumeAddr
	testenv.WaitFor(t, 30*time.Second, "the consumer's counters to cover every event", func() (bool, error) {
		v, _ := testenv.MetricValue(testenv.Metrics(t, con+"/metrics"), "procon_consumer_records_total", "topic="+topic, "outcome=applied")
		return v >= events, nil
	})
	fams = testenv.Metrics(t, con+"/metrics")
	if got := testenv.MustMetric(t, fams, "procon_consumer_records_total", "topic="+topic, "outcome=applied"); got != events {
		t.Errorf("procon_consumer_records_total{outcome=applied} = %v, want %d", got, events)
	}
	if got, _ := testenv.MetricValue(fams, "procon_consumer_records_total", "outcome=repeat"); got != 0 {
		t.Errorf("procon_consumer_records_total{outcome=repeat} = %v, want 0", got)
	}
	if got := testenv.MustMetric(t, fams, "procon_consumer_lag_records", "topic="+topic); got != 0 {
		t.Errorf("procon_consumer_lag_records{topic=%s} = %v, want 0", topic, got)
	}
	if got := testenv.MustMetric(t, fams, "procon_consumer_partitions_assigned"); got != 1 {
		t.Errorf("procon_consumer_partitions_assigned = %v, want 1 (the only topic written, of one partition)", got)
	}
	if got := testenv.MustMetric(t, fams, "procon_consumer_batches_total", "topic="+topic); got < 1 || got != testenv.MustMetric(t, fams, "procon_consumer_apply_seconds", "topic="+topic) {
		t.Errorf("procon_consumer_batches_total = %v, want as many as apply_seconds observations and at least 1", got)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := testenv.HTTPGet(t, con+path); code != http.StatusOK {
			t.Errorf("procon-cdc consume %s: %d %s", path, code, body)
		}
	}
	var cst metrics.ConsumerStatus
	_, body = testenv.HTTPGet(t, con+"/status")
	if err := json.Unmarshal([]byte(body), &cst); err != nil {
		t.Fatalf("consume /status: %v\n%s", err, body)
	}
	if cst.Applied != events || cst.LagRecords != 0 || cst.Group != cs.group || len(cst.Partitions) != 1 || !cst.Ready {
		t.Errorf("procon-cdc consume /status: applied %d lag %d group %s partitions %d ready %v\n%s",
			cst.Applied, cst.LagRecords, cst.Group, len(cst.Partitions), cst.Ready, body)
	}
	c.stop(t)
}
