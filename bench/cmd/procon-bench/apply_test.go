package main

import (
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The consume config is issue 15's contract: name, postgres.dsn, kafka.brokers and group, and one
// entity per table with its topic and master_key (a column, or [[local, event], ...] pairs).
func TestConsumeConfigFollowsTheContract(t *testing.T) {
	b := &bench{o: &options{}, env: &env{DSN: "postgres://u:p@127.0.0.1:56432/procon?sslmode=disable", Brokers: []string{"127.0.0.1:59192"}}}
	r := &applyRun{name: "pbench_x_ap_cons", target: "pbench_x_ap_cons", topics: []string{"s.public.pbench_t1", "s.public.pbench_t2", "s.public.pbench_t3"}}
	var got struct {
		Name     string `yaml:"name"`
		Postgres struct {
			DSN string `yaml:"dsn"`
		} `yaml:"postgres"`
		Kafka struct {
			Brokers string `yaml:"brokers"`
			Group   string `yaml:"group"`
		} `yaml:"kafka"`
		Entities []struct {
			Topic     string `yaml:"topic"`
			Table     string `yaml:"table"`
			MasterKey any    `yaml:"master_key"`
		} `yaml:"entities"`
	}
	if err := yaml.Unmarshal([]byte(b.consumeConfig(r)), &got); err != nil {
		t.Fatalf("the config is not YAML: %v\n%s", err, b.consumeConfig(r))
	}
	if got.Name != r.name || got.Kafka.Group != r.name || got.Kafka.Brokers != "127.0.0.1:59192" {
		t.Errorf("name %q, group %q, brokers %q", got.Name, got.Kafka.Group, got.Kafka.Brokers)
	}
	if want := "postgres://u:p@127.0.0.1:56432/pbench_x_ap_cons?sslmode=disable"; got.Postgres.DSN != want {
		t.Errorf("postgres.dsn = %q, want the target database %q", got.Postgres.DSN, want)
	}
	if len(got.Entities) != 3 {
		t.Fatalf("%d entities, want 3", len(got.Entities))
	}
	wantKeys := []any{"id", "id", []any{[]any{"tenant", "tenant"}, []any{"id", "id"}}}
	for i, e := range got.Entities {
		if e.Topic != r.topics[i] || e.Table != "public."+applyTables[i].name {
			t.Errorf("entity %d: topic %q table %q", i, e.Topic, e.Table)
		}
		if !reflect.DeepEqual(e.MasterKey, wantKeys[i]) {
			t.Errorf("entity %d: master_key %#v, want %#v", i, e.MasterKey, wantKeys[i])
		}
	}
}

// A target that differs from the source in any table, by count or by content, fails the run.
func TestCompareTargetNamesEveryDifferingTable(t *testing.T) {
	src := map[string]tableDigest{"pbench_t1": {10, "a"}, "pbench_t2": {20, "b"}, "pbench_t3": {30, "c"}}
	same := map[string]tableDigest{"pbench_t1": {10, "a"}, "pbench_t2": {20, "b"}, "pbench_t3": {30, "c"}}
	if err := compareTarget(src, same); err != nil {
		t.Fatalf("equal digests: %v", err)
	}
	diff := map[string]tableDigest{"pbench_t1": {10, "x"}, "pbench_t2": {20, "b"}, "pbench_t3": {29, "c"}}
	err := compareTarget(src, diff)
	if err == nil {
		t.Fatal("differing digests passed")
	}
	for _, want := range []string{"pbench_t1", "pbench_t3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "pbench_t2") {
		t.Errorf("error %q names the equal table pbench_t2", err)
	}
}

// The workload's mix: every transaction has applyTxSize changes, half inserts, 40% updates and
// 10% deletes, and the event and tombstone counts follow.
func TestApplyPlanCounts(t *testing.T) {
	var ins, upd, del int64
	for _, tb := range applyTables {
		ins, upd, del = ins+tb.ins, upd+tb.upd(), del+tb.del()
	}
	if ins+upd+del != applyTxSize || ins*2 != applyTxSize || del*10 != applyTxSize {
		t.Fatalf("per transaction: %d inserts, %d updates, %d deletes; want %d in a 50/40/10 mix", ins, upd, del, applyTxSize)
	}
	p := applyPlan{txs: 7, writers: 2}
	if p.events() != 7*applyTxSize+3 || p.deletes() != 7*del {
		t.Fatalf("events %d deletes %d", p.events(), p.deletes())
	}
}

// procon-cdc consume's targets are checked against the subscription and the JDBC sink of the
// same run: ≥0.7× the one's rows/s and ≥3× the other's.
func TestScoreApplyTargets(t *testing.T) {
	run := func(consume float64) []Target {
		res := &ScenarioResult{Name: "apply", Results: []*Result{
			{Contender: "pg-subscription", Complete: true, EventsPerSecond: 10000, WallSeconds: 1},
			{Contender: "procon-consume", Complete: true, EventsPerSecond: consume, WallSeconds: 1},
			{Contender: "debezium-jdbc", Complete: true, EventsPerSecond: 2000, WallSeconds: 1},
		}}
		score(res)
		return res.Results[1].Targets
	}
	status := func(ts []Target) []string {
		var out []string
		for _, x := range ts {
			out = append(out, x.Status)
		}
		return out
	}
	for _, c := range []struct {
		rate float64
		want []string
	}{
		{7000, []string{"PASS", "PASS"}}, // 0.7x, 3.5x
		{6900, []string{"FAIL", "PASS"}}, // 0.69x, 3.45x
		{5900, []string{"FAIL", "FAIL"}}, // 0.59x, 2.95x
	} {
		if got := status(run(c.rate)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("consume at %.0f rows/s: %v, want %v", c.rate, got, c.want)
		}
	}
}
