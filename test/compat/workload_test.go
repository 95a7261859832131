package compat

import "strings"

// The workload both connectors see: every type Debezium maps (and some it does not), NULLs and
// edge values, inserts, updates (changed and unchanged TOAST), deletes, primary-key changes,
// each replica identity, multi-statement and multi-table transactions, truncate, logical
// messages and an ALTER TABLE mid-stream.

// schemaSQL creates the tables before either connector starts.
const schemaSQL = `
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS ltree;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS isn;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE pair AS (a int, b text);
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE DOMAIN dnumeric AS numeric(8,3);
CREATE DOMAIN shorttext AS varchar(10);
CREATE DOMAIN dts AS timestamp(3);

CREATE TABLE sentinel (id int PRIMARY KEY);

CREATE TABLE scalars (
  id serial PRIMARY KEY,
  b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,
  n_p numeric(12,3), n_v numeric, n_int numeric(20,0), n_neg numeric(5,-2), m money,
  c5 char(5), c1 char, vc varchar(20), vcu varchar, t text, nm name, ch "char", ct citext,
  j json, jb jsonb, x xml, u uuid,
  ip inet, cid cidr, mac macaddr, mac8 macaddr8,
  r4 int4range, r8 int8range, rn numrange, rts tsrange, rtz tstzrange, rd daterange,
  e mood, lt ltree, hs hstore, tv tsvector, ba bytea,
  bit1 bit(1), bit8 bit(8), bit20 bit(20), vb1 varbit(1), vb varbit(16), vbu varbit, o oid,
  d date, tm time, tm0 time(0), tm3 time(3), tm5 time(5), ttz timetz, ttz2 timetz(2),
  ts timestamp, ts0 timestamp(0), ts3 timestamp(3), ts4 timestamp(4), tstz timestamptz, tstz0 timestamptz(0), tstz3 timestamptz(3),
  iv interval, iv_ym interval year to month, iv_s interval second(2),
  dpos posint, dnum dnumeric, dtxt shorttext, dtime dts,
  isb isbn, pt point
);

CREATE TABLE numeric_special (
  id int PRIMARY KEY,
  n_p numeric(12,3), n_v numeric, m money, f4 float4, f8 float8
);

CREATE TABLE arrays (
  id serial PRIMARY KEY,
  a_i2 int2[], a_i4 int4[], a_i8 int8[], a_f4 float4[], a_f8 float8[], a_b bool[],
  a_t text[], a_vc varchar(10)[], a_c char(3)[], a_n numeric[], a_np numeric(6,2)[],
  a_d date[], a_tm time[], a_ttz timetz[], a_ts timestamp[], a_tstz timestamptz[],
  a_u uuid[], a_j json[], a_jb jsonb[], a_ba bytea[], a_e mood[],
  a_ip inet[], a_cid cidr[], a_mac macaddr[], a_mac8 macaddr8[],
  a_r4 int4range[], a_r8 int8range[], a_rn numrange[], a_rts tsrange[], a_rtz tstzrange[], a_rd daterange[],
  a_lt ltree[], a_hs hstore[], a_ct citext[], a_o oid[]
);

CREATE TABLE unmapped (
  id int PRIMARY KEY,
  note text,
  u_lsn pg_lsn, u_tsq tsquery, u_jp jsonpath, u_mr int4multirange, u_xid xid,
  u_box box, u_circle circle, u_line line, u_lseg lseg, u_path path, u_poly polygon, u_comp pair
);
CREATE TABLE unmapped_arrays (
  id int PRIMARY KEY,
  note text,
  u_money_a money[], u_iv_a interval[], u_xml_a xml[], u_name_a name[], u_vb_a varbit[], u_pt_a point[],
  u_dom_a posint[], u_lsn_a pg_lsn[], u_box_a box[]
);

CREATE TABLE defaults (
  id serial PRIMARY KEY,
  i int NOT NULL DEFAULT 42,
  neg int DEFAULT -1,
  sm int2 DEFAULT 5,
  bi bigint DEFAULT 9223372036854775807,
  t text DEFAULT 'it''s',
  vc varchar(10) DEFAULT 'abc',
  ch char(3) DEFAULT 'x',
  b bool NOT NULL DEFAULT true,
  n numeric(8,2) DEFAULT 1.5,
  nv numeric DEFAULT 3.14,
  f4 real DEFAULT 1.25,
  f8 float8 DEFAULT 2.5,
  ts timestamp DEFAULT now(),
  ts_lit timestamp DEFAULT '2020-01-02 03:04:05.678',
  tstz timestamptz NOT NULL DEFAULT now(),
  tstz_lit timestamptz DEFAULT '2020-01-02 03:04:05.678+02',
  d date DEFAULT '2020-02-29',
  d_now date DEFAULT CURRENT_DATE,
  tm time DEFAULT '12:34:56',
  u uuid DEFAULT gen_random_uuid(),
  u_lit uuid DEFAULT 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  j jsonb DEFAULT '{"a": 1}',
  e mood DEFAULT 'ok',
  iv interval DEFAULT '1 day 02:00:00',
  by bytea DEFAULT '\x00',
  bt bit(3) DEFAULT B'101',
  bt1 bit(1) DEFAULT B'1',
  nulldef text DEFAULT NULL,
  req text NOT NULL DEFAULT 'required'
);

CREATE TABLE toast_default (
  id int PRIMARY KEY, n int,
  t text, vc varchar, jb jsonb, j json, x xml, ba bytea,
  ta text[], ia int4[], la int8[], da date[], ua uuid[], baa bytea[], hs hstore
);
CREATE TABLE toast_full (LIKE toast_default INCLUDING ALL);
ALTER TABLE toast_full REPLICA IDENTITY FULL;

CREATE TABLE ri_default (id int PRIMARY KEY, a text, b int NOT NULL DEFAULT 7, c text NOT NULL, d numeric(6,2) NOT NULL);
CREATE TABLE ri_full (id int PRIMARY KEY, a text, b int NOT NULL DEFAULT 7, c text NOT NULL);
ALTER TABLE ri_full REPLICA IDENTITY FULL;
CREATE TABLE ri_index (id int PRIMARY KEY, code text NOT NULL, a text, b int NOT NULL);
CREATE UNIQUE INDEX ri_index_code ON ri_index (code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code;
CREATE TABLE ri_nothing (id int PRIMARY KEY, a text);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE nokey (a int, b text);
ALTER TABLE nokey REPLICA IDENTITY FULL;
CREATE TABLE uniq_nopk (code text NOT NULL, a text);
CREATE UNIQUE INDEX uniq_nopk_code ON uniq_nopk (code);
ALTER TABLE uniq_nopk REPLICA IDENTITY USING INDEX uniq_nopk_code;

CREATE TABLE pk_change (id int PRIMARY KEY, v text);
CREATE TABLE pk_change_full (k1 int, k2 text, v text, PRIMARY KEY (k1, k2));
ALTER TABLE pk_change_full REPLICA IDENTITY FULL;

CREATE TABLE multi_a (id bigserial PRIMARY KEY, v text);
CREATE TABLE multi_b (id uuid PRIMARY KEY, n numeric(10,2));
CREATE TABLE trunc_a (id int PRIMARY KEY);
CREATE TABLE trunc_b (id int PRIMARY KEY);

CREATE TABLE evolve (id int PRIMARY KEY, a text, b int, c int NOT NULL DEFAULT 0);

-- Outbox tables (the outbox pipelines route them with Debezium's EventRouter): the usual
-- columns, and two more to place in headers and the envelope.
CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype varchar(255) NOT NULL, aggregateid varchar(255) NOT NULL,
  type varchar(255) NOT NULL, payload jsonb, tenant int NOT NULL DEFAULT 7, created timestamp(6) NOT NULL DEFAULT '2026-12-07 10:00:00.123456');
CREATE TABLE outbox_text (id uuid PRIMARY KEY, aggregatetype varchar(255), aggregateid varchar(255) NOT NULL,
  type varchar(255) NOT NULL, payload text, tenant int NOT NULL DEFAULT 8, created timestamp(6) NOT NULL DEFAULT '2026-12-07 11:00:00');

-- heartbeat.action.query writes here; no connector captures it.
CREATE TABLE hb_action (id bigserial PRIMARY KEY, who text);
`

// olderServers are the workload's types an older server lacks, each with its stand-in there
// (the same text on both connectors' side, so the comparison still holds): a negative numeric
// scale came with PostgreSQL 15; multiranges and numeric's infinities with 14.
var olderServers = []struct {
	before   int
	from, to string
}{
	{15, "numeric(5,-2)", "numeric(7,0)"},
	{14, "int4multirange", "int4range"},
	{14, "'{[1,3),[5,7)}'", "'[1,7)'"},
	{14, "(2, 999999999.999, 'Infinity',", "(2, 999999999.999, 'NaN',"},
	{14, "(3, -999999999.999, '-Infinity',", "(3, -999999999.999, 'NaN',"},
}

// forServer rewrites the workload's SQL for a server of the given major version.
func forServer(sql string, major int) string {
	for _, r := range olderServers {
		if major < r.before {
			sql = strings.ReplaceAll(sql, r.from, r.to)
		}
	}
	return sql
}

// step is one transaction of the workload (or a barrier: wait until every connector has
// written everything up to here, so that catalog reads cannot race the next DDL).
type step struct {
	sql     string
	barrier bool
}

// big is a deterministic text of n*32 characters; columns that hold it are stored EXTERNAL,
// so it is TOASTed out of line and an update that leaves it alone sends it as unchanged.
const toastSetup = `
CREATE FUNCTION big(n int, seed text) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT string_agg(md5(seed || i::text), '') FROM generate_series(1, n) i $$;
ALTER TABLE toast_default ALTER COLUMN t SET STORAGE EXTERNAL, ALTER COLUMN vc SET STORAGE EXTERNAL,
  ALTER COLUMN jb SET STORAGE EXTERNAL, ALTER COLUMN j SET STORAGE EXTERNAL, ALTER COLUMN x SET STORAGE EXTERNAL,
  ALTER COLUMN ba SET STORAGE EXTERNAL, ALTER COLUMN ta SET STORAGE EXTERNAL, ALTER COLUMN ia SET STORAGE EXTERNAL,
  ALTER COLUMN la SET STORAGE EXTERNAL, ALTER COLUMN da SET STORAGE EXTERNAL, ALTER COLUMN ua SET STORAGE EXTERNAL,
  ALTER COLUMN baa SET STORAGE EXTERNAL, ALTER COLUMN hs SET STORAGE EXTERNAL;
ALTER TABLE toast_full ALTER COLUMN t SET STORAGE EXTERNAL, ALTER COLUMN vc SET STORAGE EXTERNAL,
  ALTER COLUMN jb SET STORAGE EXTERNAL, ALTER COLUMN j SET STORAGE EXTERNAL, ALTER COLUMN x SET STORAGE EXTERNAL,
  ALTER COLUMN ba SET STORAGE EXTERNAL, ALTER COLUMN ta SET STORAGE EXTERNAL, ALTER COLUMN ia SET STORAGE EXTERNAL,
  ALTER COLUMN la SET STORAGE EXTERNAL, ALTER COLUMN da SET STORAGE EXTERNAL, ALTER COLUMN ua SET STORAGE EXTERNAL,
  ALTER COLUMN baa SET STORAGE EXTERNAL, ALTER COLUMN hs SET STORAGE EXTERNAL;
`

const toastRow1 = `(1, 0, big(200, 't1'), big(100, 'vc'), jsonb_build_object('k', big(150, 'jb'), 'n', 1),
  json_build_object('k', big(150, 'j')), xmlelement(name r, big(150, 'x')), convert_to(big(150, 'ba'), 'UTF8'),
  ARRAY[big(80, 'ta1'), big(80, 'ta2')], (SELECT array_agg(i * 7919) FROM generate_series(1, 1200) i),
  (SELECT array_agg(i::int8 * 1000000007) FROM generate_series(1, 600) i),
  (SELECT array_agg(date '2000-01-01' + i) FROM generate_series(1, 1200) i),
  (SELECT array_agg(md5(i::text)::uuid) FROM generate_series(1, 300) i),
  ARRAY[convert_to(big(80, 'baa'), 'UTF8')],
  hstore(ARRAY['k1', big(80, 'hs1'), 'k2', big(80, 'hs2')]))`

var workload = []step{
	// Scalars: a typical row, an all-NULL row, the low edges, the high edges and unicode.
	{sql: `INSERT INTO scalars (b, i2, i4, i8, f4, f8, n_p, n_v, n_int, n_neg, m, c5, c1, vc, vcu, t, nm, ch, ct, j, jb, x, u,
  ip, cid, mac, mac8, r4, r8, rn, rts, rtz, rd, e, lt, hs, tv, ba, bit1, bit8, bit20, vb1, vb, vbu, o,
  d, tm, tm0, tm3, tm5, ttz, ttz2, ts, ts0, ts3, ts4, tstz, tstz0, tstz3, iv, iv_ym, iv_s, dpos, dnum, dtxt, dtime, isb, pt)
VALUES (true, 1, 2, 3, 1.5, 2.25, 12345.678, 3.14159, 12345678901234567890, 12345, 12.34, 'ab', 'c', 'varchar', 'unbounded', 'text', 'name', 'c', 'CiText',
  '{"a": 1, "b": [1, 2]}', '{"b": [1, 2], "a": 1}', '<a>b</a>', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '192.168.0.1/24', '192.168.0.0/24', '08:00:2b:01:02:03', '08:00:2b:01:02:03:04:05',
  '[1,10)', '[1,100]', '(1.5,2.5]', '[2020-01-01 00:00,2020-01-02 00:00)', '[2020-01-01 00:00+02,2020-01-02 00:00+02)', '[2020-01-01,2020-02-01)',
  'happy', 'Top.Science.Astronomy', 'a=>1, "b c"=>NULL, "q\"uote"=>"x\\y"', 'a fat cat sat', '\xdeadbeef',
  '1', '10100101', '10000000000000000001', '1', '101', '1100110011001100110011', 4294967295,
  '2020-02-29', '13:14:15.123456', '13:14:15', '13:14:15.123', '13:14:15.12345', '13:14:15.5+02', '13:14:15.123456-07:30',
  '2020-02-29 13:14:15.123456', '2020-02-29 13:14:15', '2020-02-29 13:14:15.123', '2020-02-29 13:14:15.1234',
  '2020-02-29 13:14:15.123456+02', '2020-02-29 13:14:15+02', '2020-02-29 13:14:15.123-05:30',
  '1 year 2 mons 3 days 04:05:06.789', '3 years 4 mons', '12.345678 seconds',
  5, 1.5, 'dom', '2020-02-29 13:14:15.123456', '978-0-393-04002-9', '(1.5,2.5)')`},
	{sql: `INSERT INTO scalars DEFAULT VALUES`},
	{sql: `INSERT INTO scalars (b, i2, i4, i8, f4, f8, n_p, n_v, n_int, n_neg, m, c5, c1, vc, vcu, t, nm, ch, ct, j, jb, x, u,
  ip, cid, mac, mac8, r4, r8, rn, rts, rtz, rd, e, lt, hs, tv, ba, bit1, bit8, bit20, vb1, vb, vbu, o,
  d, tm, tm0, tm3, tm5, ttz, ttz2, ts, ts0, ts3, ts4, tstz, tstz0, tstz3, iv, iv_ym, iv_s, dpos, dnum, dtxt, dtime, isb, pt)
VALUES (false, -32768, -2147483648, -9223372036854775808, '-Infinity', 'NaN', -999999999.999, -0.000000001, -99999999999999999999, -9999900, -92233720368547758.08,
  '', ' ', '', '', '', '', '', '',
  '[]', '{}', '', '00000000-0000-0000-0000-000000000000',
  '::1', '::/0', '00:00:00:00:00:00', '00:00:00:00:00:00:00:00',
  'empty', '(,)', '(,)', '[-infinity,infinity]', '(,)', 'empty',
  'sad', '', '', '', '\x',
  '0', '00000000', '00000000000000000000', '0', '', '0', 0,
  '4713-01-01 BC', '00:00:00', '00:00:00', '00:00:00', '00:00:00', '00:00:00+15:59', '00:00:00-15:59',
  '4713-01-01 00:00:00 BC', '-infinity', '1900-01-01 00:00:00.001', '1969-12-31 23:59:59.9999',
  '4713-01-01 00:00:00+00 BC', '-infinity', '1969-12-31 23:59:59.999+00',
  '-178000000 years', '-1 mons', '-0.5 seconds',
  1, -99999.999, '', '1969-12-31 23:59:59.999', '0-306-40615-2', '(-0,0)')`},
	{sql: `INSERT INTO scalars (b, i2, i4, i8, f4, f8, n_p, n_v, n_int, n_neg, m, c5, c1, vc, vcu, t, nm, ch, ct, j, jb, x, u,
  ip, cid, mac, mac8, r4, r8, rn, rts, rtz, rd, e, lt, hs, tv, ba, bit1, bit8, bit20, vb1, vb, vbu, o,
  d, tm, tm0, tm3, tm5, ttz, ttz2, ts, ts0, ts3, ts4, tstz, tstz0, tstz3, iv, iv_ym, iv_s, dpos, dnum, dtxt, dtime, isb, pt)
VALUES (true, 32767, 2147483647, 9223372036854775807, 'Infinity', 1.7976931348623157e308, 999999999.999,
  ('1' || repeat('0', 600) || '.' || repeat('5', 399))::numeric, 99999999999999999999, 9999900, 92233720368547758.07,
  'ünï', 'é', 'héllo wörld ☃', repeat('long ', 100),
  E'unicode ☃ 𝄞 "quoted" \\ back\\slash \n newline \t tab \r cr \b bs \f ff \u0001 ctl \u001f us \u007f del \u2028 \u2029 </script> &amp; <> \'',
  'ñame', 'z', 'ÇİTEXT',
  E'{"k": "\\u00e9 ☃ \\n", "n": 1.0e10, "big": 12345678901234567890, "arr": [true, null]}',
  E'{"k": "\\u00e9 ☃ \\n", "n": 1.0e10, "big": 12345678901234567890, "arr": [true, null]}',
  '<r a="☃">&lt;x&gt;</r>', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF',
  '2001:db8::ff00:42:8329/128', '2001:db8::/32', 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff:ff:ff',
  '[-2147483648,2147483647)', '[-9223372036854775808,9223372036854775807)', '[-1e-10,1e20]',
  '("2020-01-01 00:00:00.123456","2030-01-01 00:00:00")', '["2020-01-01 00:00:00.123456+05:45",infinity)', '[2020-01-01,infinity)',
  'ok', 'a.b_c.D9', '"☃"=>"𝄞", "k"=>"v", "emptyval"=>""', 'é ☃ ''quoted''', '\x00ff7f80',
  '1', '11111111', '11111111111111111111', '1', '1111111111111111', repeat('10', 100)::varbit, 1,
  '5874897-12-31', '24:00:00', '23:59:59', '23:59:59.999', '23:59:59.99999', '24:00:00-15:59', '23:59:59.99+15:59',
  '294246-12-31 23:59:59.999999', 'infinity', '2262-04-11 23:47:16.854', '9999-12-31 23:59:59.9999',
  '294246-12-31 23:59:59.999999+00', 'infinity', '9999-12-31 23:59:59.999+00',
  '178000000 years 11 mons 30 days 23:59:59.999999', '178000000 years', '59.99 seconds',
  2147483647, 99999.999, 'ten chars!', '9999-12-31 23:59:59.999', '978-0-306-40615-7', '(1e300,-1e-300)')`},
	{sql: `INSERT INTO scalars (d, ts, ts3, tstz, tstz3, tm, ttz) VALUES ('infinity', 'infinity', '-infinity', '-infinity', 'infinity', '24:00:00', '24:00:00+00'),
  ('-infinity', '0001-01-01 00:00:00', '0001-12-31 23:59:59.999', '0001-01-01 00:00:00+00', '1582-10-15 00:00:00.5+00', '12:00:00.000001', '12:00:00.000001-00:30')`},
	{sql: `UPDATE scalars SET t = 'updated', n_p = 0.5, tstz = '2021-06-30 12:00:00+00', e = 'sad', ba = '\x00' WHERE id = 1`},
	{sql: `DELETE FROM scalars WHERE id = 2`},

	// Special numerics (pipelines in double and string decimal modes only: precise mode
	// cannot represent them, in Debezium as in Procon).
	{sql: `INSERT INTO numeric_special VALUES
  (1, 'NaN', 'NaN', 0, 'NaN', 'NaN'),
  (2, 999999999.999, 'Infinity', 92233720368547758.07, 'Infinity', 'Infinity'),
  (3, -999999999.999, '-Infinity', -92233720368547758.08, '-Infinity', '-Infinity'),
  (4, 1.5, ('-' || repeat('9', 500) || '.' || repeat('1', 500))::numeric, 0.01, 3.4028235e38, 4.9e-324),
  (5, NULL, 0.000, NULL, 1e-45, -0.0)`},

	// Arrays: typical, all NULL, all empty, NULL elements, quoting, several dimensions.
	{sql: `INSERT INTO arrays (a_i2, a_i4, a_i8, a_f4, a_f8, a_b, a_t, a_vc, a_c, a_n, a_np, a_d, a_tm, a_ttz, a_ts, a_tstz,
  a_u, a_j, a_jb, a_ba, a_e, a_ip, a_cid, a_mac, a_mac8, a_r4, a_r8, a_rn, a_rts, a_rtz, a_rd, a_lt, a_hs, a_ct, a_o)
VALUES ('{1,2,NULL}', '{1,2,3}', '{9223372036854775807,-1}', '{1.5,NaN,-Infinity}', '{2.25,Infinity,NULL}', '{t,f,NULL}',
  '{"a b","c,d","e\"f","g\\h",NULL,"NULL","","☃"}', '{x,y}', '{ab,c}', '{1.5,-0.25,100}', '{1.5,2.25}',
  '{2020-02-29,1970-01-01,NULL}', '{13:14:15.123456,00:00:00}', '{13:14:15+02,00:00:00-03}',
  '{"2020-02-29 13:14:15.123456","1970-01-01 00:00:00"}', '{"2020-02-29 13:14:15.123456+02","1970-01-01 00:00:00+00"}',
  '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}', ARRAY['{"a":1}', '[1, 2]']::json[], ARRAY['{"b":2,"a":1}']::jsonb[],
  ARRAY['\xdeadbeef'::bytea, '\x'::bytea, NULL], '{sad,happy}', '{192.168.0.1,::1}', '{10.0.0.0/8}',
  '{08:00:2b:01:02:03}', '{08:00:2b:01:02:03:04:05}', '{"[1,2)",empty}', '{"[1,3)"}', '{"[1.5,2.5)"}',
  ARRAY['[2020-01-01,2020-01-02)'::tsrange], ARRAY['[2020-01-01 00:00+00,2020-01-02 00:00+00)'::tstzrange],
  '{"[2020-01-01,2020-01-05)"}', '{a.b,c}', ARRAY['a=>1'::hstore, 'b=>NULL'], '{A,b}', '{1,4294967295}')`},
	{sql: `INSERT INTO arrays (id) VALUES (DEFAULT)`},
	{sql: `INSERT INTO arrays (a_i2, a_i4, a_i8, a_f4, a_f8, a_b, a_t, a_vc, a_c, a_n, a_np, a_d, a_tm, a_ttz, a_ts, a_tstz,
  a_u, a_j, a_jb, a_ba, a_e, a_ip, a_cid, a_mac, a_mac8, a_r4, a_r8, a_rn, a_rts, a_rtz, a_rd, a_lt, a_hs, a_ct, a_o)
VALUES ('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',
  '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}')`},
	{sql: `INSERT INTO arrays (a_i2, a_i4, a_i8, a_t, a_n, a_u) VALUES ('{NULL}', '{NULL,NULL}', '{NULL}', '{NULL}', '{NULL}', '{NULL}')`},
	// Several dimensions and explicit lower bounds.
	{sql: `INSERT INTO arrays (a_i2, a_i4, a_t, a_f8, a_b, a_d) VALUES ('[0:1]={5,6}', '{{1,2},{3,4}}', '{{a,b},{c,NULL}}', '{{1.5},{2.5}}', '{{t},{f}}', '{{2020-01-01}}')`},
	{sql: `UPDATE arrays SET a_i4 = '{4,5,6}', a_t = '{"x y"}' WHERE id = 1`},
	{sql: `DELETE FROM arrays WHERE id = 3`},

	// Types Debezium cannot map.
	{sql: `INSERT INTO unmapped VALUES (1, 'note', '16/B374D848', 'fat & rat', '$.a[*] ? (@ > 2)', '{[1,3),[5,7)}', '12345',
  '(1,2),(3,4)', '<(1,2),3>', '{1,-1,0}', '[(1,2),(3,4)]', '[(1,2),(3,4),(5,6)]', '((1,2),(3,4),(5,6))', '(1,"x y ☃")')`},
	{sql: `INSERT INTO unmapped (id) VALUES (2)`},
	{sql: `UPDATE unmapped SET note = 'updated' WHERE id = 1`},
	{sql: `INSERT INTO unmapped_arrays VALUES (1, 'note', '{1.50,-2.25}', '{"1 day","02:00:00"}', ARRAY['<a/>'::xml], '{n1,n2}', '{101,1}',
  '{"(1,2)"}', '{1,2}', '{16/B374D848}', '{(1,2),(3,4);(5,6),(7,8)}')`},
	{sql: `INSERT INTO unmapped_arrays (id) VALUES (2)`},

	// Defaults: all defaulted, explicit NULLs in defaulted columns (JsonConverter writes the
	// default in their place), and a delete whose before only has the key.
	{sql: `INSERT INTO defaults DEFAULT VALUES`},
	{sql: `INSERT INTO defaults (neg, sm, bi, t, vc, ch, n, nv, f4, f8, ts, ts_lit, tstz_lit, d, d_now, tm, u, u_lit, j, e, iv, by, bt, bt1, nulldef)
VALUES (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`},
	{sql: `DELETE FROM defaults WHERE id = 1`},

	// TOAST: insert, update leaving the TOASTed columns alone, update changing one, delete;
	// under REPLICA IDENTITY DEFAULT and FULL.
	{sql: `INSERT INTO toast_default VALUES ` + toastRow1 + `; INSERT INTO toast_full VALUES ` + toastRow1},
	{sql: `UPDATE toast_default SET n = 1 WHERE id = 1; UPDATE toast_full SET n = 1 WHERE id = 1`},
	{sql: `UPDATE toast_default SET n = 2, t = 'short now' WHERE id = 1; UPDATE toast_full SET n = 2, t = 'short now' WHERE id = 1`},
	{sql: `DELETE FROM toast_default WHERE id = 1; DELETE FROM toast_full WHERE id = 1`},

	// Replica identities.
	{sql: `INSERT INTO ri_default VALUES (1, 'a', 1, 'c', 1.25), (2, NULL, 2, 'c2', 2.5);
INSERT INTO ri_full VALUES (1, 'a', 1, 'c'), (2, NULL, 2, 'c2');
INSERT INTO ri_index VALUES (1, 'one', 'a', 1), (2, 'two', NULL, 2);
INSERT INTO ri_nothing VALUES (1, 'a');
INSERT INTO nokey VALUES (1, 'a'), (2, 'b');
INSERT INTO uniq_nopk VALUES ('k1', 'a'), ('k2', 'b')`},
	{sql: `UPDATE ri_default SET a = 'a2' WHERE id = 1;
UPDATE ri_full SET a = 'a2' WHERE id = 1;
UPDATE ri_index SET a = 'a2' WHERE id = 1;
UPDATE ri_index SET code = 'uno' WHERE id = 1;
UPDATE nokey SET b = 'a2' WHERE a = 1;
UPDATE uniq_nopk SET a = 'a2' WHERE code = 'k1';
UPDATE uniq_nopk SET code = 'k3' WHERE code = 'k2'`},
	{sql: `DELETE FROM ri_default WHERE id = 2;
DELETE FROM ri_full WHERE id = 2;
DELETE FROM ri_index WHERE id = 2;
DELETE FROM nokey WHERE a = 2;
DELETE FROM uniq_nopk WHERE code = 'k1'`},

	// Primary-key changes: delete + tombstone + create with __debezium.oldkey/newkey.
	{sql: `INSERT INTO pk_change VALUES (1, 'v'); INSERT INTO pk_change_full VALUES (1, 'a', 'v')`},
	{sql: `UPDATE pk_change SET id = 101 WHERE id = 1; UPDATE pk_change_full SET k2 = 'b', v = 'w' WHERE k1 = 1`},
	{sql: `UPDATE pk_change SET v = 'same key' WHERE id = 101`},

	// A multi-statement, multi-table transaction with logical messages inside.
	{sql: `BEGIN;
INSERT INTO multi_a (v) VALUES ('one'), ('two');
SELECT pg_logical_emit_message(true, 'app', 'inside the transaction');
INSERT INTO multi_b VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.5);
UPDATE multi_a SET v = 'uno' WHERE id = 1;
SELECT pg_logical_emit_message(true, 'skip_me', 'filtered by prefix');
SELECT pg_logical_emit_message(true, 'bin', '\x00ff10'::bytea);
DELETE FROM multi_a WHERE id = 2;
INSERT INTO multi_b VALUES ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', -2.25);
COMMIT`},
	{sql: `SELECT pg_logical_emit_message(false, 'app', 'outside any transaction')`},
	{sql: `SELECT pg_logical_emit_message(true, 'app', '')`},

	// Truncate (skipped by default; emitted with skipped.operations=none).
	{sql: `INSERT INTO trunc_a VALUES (1), (2); INSERT INTO trunc_b VALUES (1)`},
	{sql: `TRUNCATE trunc_a, trunc_b`},
	{sql: `INSERT INTO trunc_a VALUES (3)`},

	// Outbox rows: one event; an event whose row is deleted in its own transaction (the usual
	// way to keep the table empty); several aggregates in one transaction; an update and a
	// delete (no event); JSON of every shape the expansion meets; null and blank payloads;
	// text payloads that are not JSON or that the expansion gives up on. (Not here: payloads
	// that stop Debezium's task, which procon-cdc sends unexpanded: docs/compatibility.md.)
	{sql: `INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES
  ('11111111-1111-4111-8111-111111111111', 'Order', 'o-1', 'OrderCreated', '{"id": 1, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}], "total": 12.5, "note": null}')`},
	{sql: `BEGIN;
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload, tenant) VALUES
  ('22222222-2222-4222-8222-222222222222', 'Order', 'o-2', 'OrderCreated', '{"id": 2, "tags": ["x", "y"], "big": 9007199254740993, "ratio": 1e2, "neg": -0.5}', 9);
DELETE FROM outbox WHERE id = '22222222-2222-4222-8222-222222222222';
INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES
  ('33333333-3333-4333-8333-333333333333', 'Customer', 'c-1', 'CustomerRegistered', '{"name": "Zoë ☃", "vip": true, "address": {"city": "Oslo", "zip": "0150", "geo": {"lat": 59.9, "lon": 10.7}}}');
DELETE FROM outbox WHERE id = '33333333-3333-4333-8333-333333333333';
COMMIT`},
	{sql: `INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) VALUES
  ('44444444-4444-4444-8444-444444444444', 'Order', 'o-1', 'OrderPaid', '{}'),
  ('55555555-5555-4555-8555-555555555555', 'Order', 'o-3', 'OrderCreated', '{"a": {"b": []}, "n": [[1, 2], [3]], "m": [null, 4], "objs": [{"k": 1}, {"k": 2, "extra": "e"}]}'),
  ('66666666-6666-4666-8666-666666666666', 'Customer', 'c-2', 'CustomerDeleted', NULL),
  ('77777777-7777-4777-8777-777777777777', 'Shipment', 's-1', 'Shipped', '"a JSON string"')`},
	{sql: `UPDATE outbox SET type = 'changed' WHERE id = '11111111-1111-4111-8111-111111111111'`},
	{sql: `DELETE FROM outbox WHERE aggregatetype = 'Order'`},
	{sql: `INSERT INTO outbox_text (id, aggregatetype, aggregateid, type, payload) VALUES
  ('a1111111-1111-4111-8111-111111111111', 'Note', 'n-1', 'Plain', 'hello, not JSON'),
  ('a2222222-2222-4222-8222-222222222222', 'Note', 'n-2', 'Blank', '   '),
  ('a3333333-3333-4333-8333-333333333333', 'Note', 'n-3', 'Json', '{"z": 1, "a": 2, "z": 3, "s": "dup keys keep the first place"}'),
  ('a5555555-5555-4555-8555-555555555555', 'Note', 'n-5', 'Mixed', '{"mixed": [1, "a"]}'),
  ('a6666666-6666-4666-8666-666666666666', 'Note', 'n-6', 'Sizes', '{"i": [1, 2147483648]}'),
  ('a7777777-7777-4777-8777-777777777777', 'Note', 'n-7', 'Empty', ''),
  ('a8888888-8888-4888-8888-888888888888', 'Note', 'n-8', 'Spaced', ' {"lead": "space"}'),
  ('a9999999-9999-4999-8999-999999999999', 'Note', 'n-9', 'Trailing', '{"t": 1} and more')`},

	// ALTER TABLE mid-stream: add a column, drop one, change a type. Barriers keep the
	// connectors' catalog reads from seeing a later shape.
	{sql: `INSERT INTO evolve VALUES (1, 'a', 1, 1)`},
	{barrier: true},
	{sql: `ALTER TABLE evolve ADD COLUMN d text DEFAULT 'dflt'`},
	{sql: `INSERT INTO evolve VALUES (2, 'b', 2, 2, 'd')`},
	{barrier: true},
	{sql: `ALTER TABLE evolve DROP COLUMN b`},
	{sql: `INSERT INTO evolve VALUES (3, 'c', 3)`},
	{barrier: true},
	{sql: `ALTER TABLE evolve ALTER COLUMN c TYPE bigint`},
	{sql: `INSERT INTO evolve VALUES (4, 'd', 9000000000)`},
	{sql: `UPDATE evolve SET a = 'changed' WHERE id = 1`},
	{barrier: true},
}
