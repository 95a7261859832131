package dev.procon.compat;

import io.debezium.DebeziumException;
import io.debezium.embedded.EmbeddedEngineChangeEvent;
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.JsonByteArray;
import io.debezium.engine.format.KeyValueHeaderChangeEventFormat;

import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.lang.management.ManagementFactory;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import javax.management.MBeanServer;
import javax.management.ObjectName;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.connect.source.SourceRecord;

/**
 * Debezium 3.6.1.Final's embedded engine (PostgreSQL connector) writing to Kafka, for Procon's
 * compatibility tests and benchmarks: the reference output and the peer to race against.
 *
 * <pre>java -jar debezium-runner.jar RUNNER.properties</pre>
 *
 * The properties file has four kinds of keys (see test/compat/debezium/example.properties):
 * <ul>
 * <li>{@code debezium.*}: prefix stripped, handed to the engine as is (connector, offsets, converters).</li>
 * <li>{@code kafka.*}: prefix stripped, the KafkaProducer's settings (the AdminClient takes the subset it knows).</li>
 * <li>{@code converter.schemas.enable}: JsonConverter with or without the {schema,payload} wrapper.</li>
 * <li>runner settings: {@code topic.partitions}, {@code topic.replication.factor}, {@code max.events},
 * {@code progress.interval.ms}, {@code shutdown.timeout.ms}, {@code log.level}.</li>
 * </ul>
 *
 * Stdout carries only machine-readable lines ({@code DEBEZIUM-READY}, then {@code DEBEZIUM-PROGRESS
 * produced=N acked=N} every progress.interval.ms and once more at exit); logs go to stderr, and a
 * fatal error as one {@code DEBEZIUM-ERROR ...} line followed by its stack trace. Exit status: 0 after SIGTERM/SIGINT, after
 * {@code max.events} or when the engine ends by itself without error; 1 on a runtime error; 2 on a
 * usage or configuration error; 3 if shutting down took longer than {@code shutdown.timeout.ms}.
 */
public final class DebeziumRunner {

    private static final String POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector";
    private static final String FILE_OFFSET_STORE = "org.apache.kafka.connect.storage.FileOffsetBackingStore";
    private static final Set<String> RUNNER_KEYS = Set.of("converter.schemas.enable", "topic.partitions",
            "topic.replication.factor", "max.events", "progress.interval.ms", "shutdown.timeout.ms", "log.level");

    // ---- configuration (parsed once in main) ----
    private final Properties engineProps = new Properties();
    private final Properties producerProps = new Properties();
    private final Properties adminProps = new Properties();
    private int topicPartitions = 1;
    private short topicReplicationFactor = 1;
    private long maxEvents = 0;
    private long progressIntervalMs = 5000;
    private long shutdownTimeoutMs = 60000;

    // ---- runtime state ----
    private final AtomicLong produced = new AtomicLong();
    private final AtomicLong acked = new AtomicLong();
    /** Acknowledged records of an initial/blocking snapshot (their offsets carry a "snapshot" key). */
    private final AtomicLong ackedSnapshot = new AtomicLong();
    private volatile boolean lastSnapshotRecordAcked;
    /** Counted down once: by a signal, max.events, the first error, or the engine ending by itself. */
    private final CountDownLatch stop = new CountDownLatch(1);
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private final AtomicReference<String> stopReason = new AtomicReference<>();
    private final Set<String> knownTopics = ConcurrentHashMap.newKeySet();
    private volatile boolean stopping;
    private KafkaProducer<byte[], byte[]> producer;
    private Admin admin;
    /** Used by the readiness thread only, closed once DEBEZIUM-READY is out. */
    private Connection readinessDb;

    public static void main(String[] args) {
        if (args.length != 1) {
            System.err.println("usage: java -jar debezium-runner.jar RUNNER.properties");
            System.exit(2);
        }
        DebeziumRunner runner = new DebeziumRunner();
        try {
            runner.configure(load(Path.of(args[0])));
        }
        catch (IllegalArgumentException | IOException e) {
            System.err.println("DEBEZIUM-ERROR configuration: " + e.getMessage());
            System.exit(2);
        }
        System.exit(runner.run());
    }

    private static Properties load(Path file) throws IOException {
        Properties p = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            p.load(in);
        }
        return p;
    }

    // ------------------------------------------------------------------------------------------
    // Configuration

    private void configure(Properties file) {
        // First of all: Kafka's config classes create their loggers in static initializers.
        configureLogging(file.getProperty("log.level", "info").trim());
        for (String key : new TreeSet<>(file.stringPropertyNames())) {
            String value = file.getProperty(key).trim();
            if (key.startsWith("debezium.")) {
                engineProps.setProperty(key.substring("debezium.".length()), value);
            }
            else if (key.startsWith("kafka.")) {
                producerProps.setProperty(key.substring("kafka.".length()), value);
            }
            else if (!RUNNER_KEYS.contains(key)) {
                throw new IllegalArgumentException("unknown key '" + key + "' (engine keys take the prefix 'debezium.', producer keys 'kafka.')");
            }
        }
        // The top-level key wins over debezium.converter.schemas.enable: it is the one tests flip.
        String schemas = file.getProperty("converter.schemas.enable");
        if (schemas != null) {
            schemas = schemas.trim();
            if (!schemas.equals("true") && !schemas.equals("false")) {
                throw new IllegalArgumentException("converter.schemas.enable must be true or false, not '" + schemas + "'");
            }
            engineProps.setProperty("converter.schemas.enable", schemas);
        }
        topicPartitions = (int) number(file, "topic.partitions", 1, 1);
        topicReplicationFactor = (short) number(file, "topic.replication.factor", 1, 1);
        maxEvents = number(file, "max.events", 0, 0);
        progressIntervalMs = number(file, "progress.interval.ms", 5000, 100);
        shutdownTimeoutMs = number(file, "shutdown.timeout.ms", 60000, 1000);

        // Engine defaults: this runner is for PostgreSQL over pgoutput. Debezium's own default
        // plugin is decoderbufs, which is not installed on our servers.
        engineProps.putIfAbsent("connector.class", POSTGRES_CONNECTOR);
        engineProps.putIfAbsent("plugin.name", "pgoutput");
        if (!engineProps.containsKey("topic.prefix")) {
            throw new IllegalArgumentException("debezium.topic.prefix is required");
        }
        // The engine name is the first element of the offset key; Debezium requires one.
        engineProps.putIfAbsent("name", engineProps.getProperty("topic.prefix"));
        engineProps.putIfAbsent("offset.storage", FILE_OFFSET_STORE);
        if (FILE_OFFSET_STORE.equals(engineProps.getProperty("offset.storage"))
                && !engineProps.containsKey("offset.storage.file.filename")) {
            throw new IllegalArgumentException("debezium.offset.storage.file.filename is required (the FileOffsetBackingStore's file)");
        }

        if (!producerProps.containsKey(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG)) {
            throw new IllegalArgumentException("kafka.bootstrap.servers is required");
        }
        producerProps.putIfAbsent(ProducerConfig.ACKS_CONFIG, "all");
        producerProps.putIfAbsent(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        producerProps.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "procon-debezium-runner");
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        // The admin client gets the connection and security settings, not the producer tuning
        // (it would log every unknown key as a warning).
        for (String name : producerProps.stringPropertyNames()) {
            if (AdminClientConfig.configNames().contains(name)) {
                adminProps.setProperty(name, producerProps.getProperty(name));
            }
        }
    }

    private static long number(Properties p, String key, long dflt, long min) {
        String v = p.getProperty(key);
        if (v == null) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v.trim());
            if (n < min) {
                throw new IllegalArgumentException(key + " must be >= " + min + ", not " + n);
            }
            return n;
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " must be an integer, not '" + v + "'");
        }
    }

    /**
     * slf4j-simple reads its settings from system properties when the first logger is created, so this
     * must run before any Debezium or Kafka class logs. -D options on the command line still win.
     */
    static void configureLogging(String level) {
        setIfAbsent("org.slf4j.simpleLogger.defaultLogLevel", level);
        setIfAbsent("org.slf4j.simpleLogger.showDateTime", "true");
        setIfAbsent("org.slf4j.simpleLogger.dateTimeFormat", "HH:mm:ss.SSS");
        setIfAbsent("org.slf4j.simpleLogger.logFile", "System.err");
        // Kafka clients print every config value at INFO when a client is created: noise, not news.
        for (String c : List.of("org.apache.kafka.clients.producer.ProducerConfig", "org.apache.kafka.clients.admin.AdminClientConfig",
                "org.apache.kafka.clients.consumer.ConsumerConfig", "org.apache.kafka.common.utils.AppInfoParser",
                "org.apache.kafka.connect.json.JsonConverterConfig")) {
            setIfAbsent("org.slf4j.simpleLogger.log." + c, "warn");
        }
    }

    private static void setIfAbsent(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }

    // ------------------------------------------------------------------------------------------
    // Lifecycle

    private int run() {
        // SIGTERM/SIGINT through sun.misc.Signal rather than a shutdown hook: a hook cannot choose the
        // exit status (the JVM exits 143 after SIGTERM) and must not call System.exit. With a handler
        // the main thread performs an orderly stop and exits 0.
        for (String sig : List.of("TERM", "INT")) {
            sun.misc.Signal.handle(new sun.misc.Signal(sig), s -> requestStop("SIG" + s.getName(), null));
        }

        DebeziumEngine<ChangeEvent<byte[], byte[]>> engine;
        Thread engineThread;
        try {
            producer = new KafkaProducer<>(producerProps);
            admin = Admin.create(adminProps);
            // Fail now rather than at the first change event if the brokers cannot be reached.
            try {
                admin.describeCluster().clusterId().get(30, TimeUnit.SECONDS);
            }
            catch (java.util.concurrent.TimeoutException e) {
                throw new DebeziumException("no Kafka broker answered at " + producerProps.getProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG) + " within 30 s");
            }
            // JsonByteArray for key, value and headers: the same bytes JsonConverter would give Kafka
            // Connect, without a byte[] -> String -> byte[] round trip per record.
            engine = DebeziumEngine.create(KeyValueHeaderChangeEventFormat.of(JsonByteArray.class, JsonByteArray.class, JsonByteArray.class))
                    .using(engineProps)
                    .using((boolean success, String message, Throwable error) -> {
                        if (success) {
                            requestStop("engine finished: " + message, null);
                        }
                        else {
                            requestStop("engine failed", error != null ? error : new DebeziumException(message));
                        }
                    })
                    .notifying(this::handleBatch)
                    .build();
        }
        catch (Exception e) {
            System.err.println("DEBEZIUM-ERROR startup: " + describe(e));
            e.printStackTrace();
            closeClients();
            return 1;
        }

        engineThread = new Thread(engine, "debezium-engine");
        engineThread.start();

        Thread readiness = new Thread(this::announceReadiness, "debezium-readiness");
        readiness.setDaemon(true);
        readiness.start();

        ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "debezium-progress");
            t.setDaemon(true);
            return t;
        });
        ticker.scheduleAtFixedRate(this::printProgress, progressIntervalMs, progressIntervalMs, TimeUnit.MILLISECONDS);

        awaitUninterruptibly(stop);
        stopping = true;
        System.err.println("debezium-runner: stopping (" + stopReason.get() + ")");

        // A stuck shutdown (Kafka or PostgreSQL gone) must not hang a test run forever.
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(shutdownTimeoutMs);
                System.err.println("DEBEZIUM-ERROR shutdown took longer than " + shutdownTimeoutMs + " ms; halting");
                System.out.flush();
                Runtime.getRuntime().halt(3);
            }
            catch (InterruptedException ignored) {
                // shut down in time
            }
        }, "debezium-shutdown-watchdog");
        watchdog.setDaemon(true);
        watchdog.start();

        // 1. Stop the engine: it stops polling and commits the offsets of the records we marked
        //    processed, i.e. only of records Kafka acknowledged. The producer stays open meanwhile,
        //    because a batch may still be waiting for its acknowledgements.
        closeEngine(engine, engineThread);
        // 2. Flush and close the producer (everything sent has been acknowledged by now, or failed).
        closeClients();
        ticker.shutdownNow();
        printProgress();
        watchdog.interrupt();

        Throwable error = failure.get();
        if (error != null) {
            System.err.println("DEBEZIUM-ERROR " + describe(error));
            error.printStackTrace();
            return 1;
        }
        return 0;
    }

    private void requestStop(String reason, Throwable error) {
        if (error != null) {
            failure.compareAndSet(null, error);
        }
        if (stopReason.compareAndSet(null, reason)) {
            stop.countDown();
        }
    }

    private void closeEngine(DebeziumEngine<?> engine, Thread engineThread) {
        while (engineThread.isAlive()) {
            try {
                engine.close();
                break;
            }
            catch (IllegalStateException e) {
                // "tasks are starting" (retry shortly) or "already stopping/stopped" (just wait).
                if (e.getMessage() == null || !e.getMessage().contains("starting")) {
                    break;
                }
                sleep(100);
            }
            catch (IOException | RuntimeException e) {
                System.err.println("debezium-runner: closing the engine failed: " + describe(e));
                break;
            }
        }
        try {
            engineThread.join();
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void closeClients() {
        if (producer != null) {
            try {
                producer.flush();
                producer.close();
            }
            catch (RuntimeException e) {
                failure.compareAndSet(null, e);
            }
        }
        if (admin != null) {
            admin.close(Duration.ofSeconds(5)); // do not wait out a hanging request
        }
    }

    // ------------------------------------------------------------------------------------------
    // Change events -> Kafka

    /**
     * Produces one engine batch and marks its records processed only once Kafka acknowledged them, in
     * order, so the offsets the engine stores (and the LSN it confirms to the slot) never run ahead of
     * Kafka. All sends of a batch are in flight together; we then wait for them before returning, as
     * Debezium Server's Kafka sink does. The committer is not thread-safe, so it is only touched here
     * on the engine's polling thread, never from producer callbacks.
     */
    private void handleBatch(List<ChangeEvent<byte[], byte[]>> records, DebeziumEngine.RecordCommitter<ChangeEvent<byte[], byte[]>> committer)
            throws InterruptedException {
        List<Future<RecordMetadata>> sends = new ArrayList<>(records.size());
        for (ChangeEvent<byte[], byte[]> event : records) {
            String topic = event.destination();
            ensureTopic(topic);
            RecordHeaders headers = new RecordHeaders();
            for (io.debezium.engine.Header<byte[]> h : event.<byte[]> headers()) {
                headers.add(h.getKey(), h.getValue());
            }
            // The partition is null (the producer hashes the key bytes, like Kafka Connect) except
            // where Debezium pins one (heartbeats go to partition 0). A null value is a tombstone.
            ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, event.partition(), event.key(), event.value(), headers);
            sends.add(producer.send(record, (md, err) -> {
                if (err == null) {
                    acked.incrementAndGet();
                }
            }));
            produced.incrementAndGet();
        }
        for (int i = 0; i < sends.size(); i++) {
            try {
                sends.get(i).get();
            }
            catch (ExecutionException e) {
                DebeziumException err = new DebeziumException("producing to topic " + records.get(i).destination() + " failed", e.getCause());
                requestStop("producer failed", err);
                throw err; // fails the engine; nothing from here on is marked processed
            }
            committer.markProcessed(records.get(i));
            noteSnapshotRecord(records.get(i));
        }
        committer.markBatchFinished();
        if (maxEvents > 0 && acked.get() >= maxEvents) {
            requestStop("max.events=" + maxEvents + " reached", null);
        }
    }

    private void noteSnapshotRecord(ChangeEvent<byte[], byte[]> event) {
        if (event instanceof EmbeddedEngineChangeEvent<?, ?, ?> e) {
            SourceRecord r = e.sourceRecord();
            Map<String, ?> offset = r != null ? r.sourceOffset() : null;
            if (offset != null && offset.containsKey("snapshot")) {
                ackedSnapshot.incrementAndGet();
                if (Boolean.TRUE.equals(offset.get("last_snapshot_record"))) {
                    lastSnapshotRecordAcked = true;
                }
            }
        }
    }

    /** Auto topic creation is off on our brokers (as in most production clusters): create on first use. */
    private void ensureTopic(String topic) {
        if (knownTopics.contains(topic)) {
            return;
        }
        try {
            admin.createTopics(List.of(new NewTopic(topic, topicPartitions, topicReplicationFactor))).all().get(60, TimeUnit.SECONDS);
            System.err.println("debezium-runner: created topic " + topic + " (" + topicPartitions + " partitions)");
        }
        catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                DebeziumException err = new DebeziumException("creating topic " + topic + " failed", e.getCause());
                requestStop("topic creation failed", err);
                throw err;
            }
        }
        catch (Exception e) {
            DebeziumException err = new DebeziumException("creating topic " + topic + " failed", e);
            requestStop("topic creation failed", err);
            throw err;
        }
        knownTopics.add(topic);
    }

    // ------------------------------------------------------------------------------------------
    // Readiness and progress

    /**
     * Prints DEBEZIUM-READY once the connector streams and its snapshot, if any, is in Kafka. The
     * engine's own callbacks fire too early for this: ConnectorCallback.taskStarted/pollingStarted
     * come as soon as PostgresConnectorTask.start() returns, but the snapshot and the streaming run
     * later on the connector's coordinator thread. Three signals are combined instead:
     * <ol>
     * <li>the streaming metrics MBean ({@code debezium.postgres:type=connector-metrics,context=streaming,
     * server=<topic.prefix>}) reports {@code Connected=true}. ChangeEventSourceCoordinator sets it right
     * before it starts the streaming source, i.e. after the snapshot completed, but before
     * START_REPLICATION, which can still fail or be retried (slot busy: "active for PID");</li>
     * <li>the slot is active and held by a walsender whose client port is one of this JVM's own TCP
     * sockets (pg_stat_replication.client_port against /proc/self): START_REPLICATION succeeded and
     * the stream is ours, not another runner's still holding the slot;</li>
     * <li>Kafka acknowledged as many snapshot records as the snapshot metrics MBean counted
     * ({@code TotalNumberOfEventsSeen}), or the one flagged {@code last_snapshot_record}: at (1) the
     * snapshot rows may still sit in Debezium's queue.</li>
     * </ol>
     * Changes committed after the line is printed are captured; in fact the start LSN is fixed when the
     * task starts (slot creation or the stored offset), so nothing committed after that is lost either.
     */
    private void announceReadiness() {
        String server = engineProps.getProperty("topic.prefix");
        long failingSince = 0;
        while (!stopping) {
            if (streamingConnected(server)) {
                Boolean ours = slotHeldByUs();
                if (ours == null) {
                    // The database cannot be queried the way Debezium does (unusual driver settings?):
                    // after 10 s of that, settle for signals (1) and (3).
                    failingSince = failingSince == 0 ? System.nanoTime() : failingSince;
                    if (System.nanoTime() - failingSince > 10_000_000_000L) {
                        System.err.println("debezium-runner: cannot query pg_replication_slots; DEBEZIUM-READY relies on the streaming metrics only");
                        ours = true;
                    }
                }
                else {
                    failingSince = 0;
                }
                if (Boolean.TRUE.equals(ours) && (lastSnapshotRecordAcked || ackedSnapshot.get() >= snapshotEventsSeen(server))) {
                    closeQuietly(readinessDb);
                    emit("DEBEZIUM-READY");
                    return;
                }
            }
            sleep(100);
        }
        closeQuietly(readinessDb);
    }

    private static boolean streamingConnected(String server) {
        return Boolean.TRUE.equals(metric("streaming", server, "Connected"));
    }

    private static long snapshotEventsSeen(String server) {
        return metric("snapshot", server, "TotalNumberOfEventsSeen") instanceof Long n ? n : 0;
    }

    /** An attribute of Debezium's connector metrics MBean for this server, or null. */
    private static Object metric(String context, String server, String attribute) {
        try {
            MBeanServer mbs = ManagementFactory.getPlatformMBeanServer();
            for (ObjectName name : mbs.queryNames(new ObjectName("debezium.postgres:type=connector-metrics,context=" + context + ",*"), null)) {
                String v = name.getKeyProperty("server");
                if (server.equals(v) || ObjectName.quote(server).equals(v)) {
                    return mbs.getAttribute(name, attribute);
                }
            }
        }
        catch (Exception e) {
            // the MBeans come and go with the task: try again on the next tick
        }
        return null;
    }

    /**
     * Whether a walsender of this process holds the slot: true, false (inactive, or someone else's),
     * or null if the database could not be queried.
     */
    private Boolean slotHeldByUs() {
        try {
            if (readinessDb == null || readinessDb.isClosed()) {
                String url = "jdbc:postgresql://" + engineProps.getProperty("database.hostname", "localhost") + ":"
                        + engineProps.getProperty("database.port", "5432") + "/" + engineProps.getProperty("database.dbname", "postgres");
                Properties p = new Properties();
                p.setProperty("user", engineProps.getProperty("database.user", ""));
                p.setProperty("password", engineProps.getProperty("database.password", ""));
                p.setProperty("sslmode", engineProps.getProperty("database.sslmode", "prefer"));
                p.setProperty("ApplicationName", "procon-debezium-runner readiness");
                p.setProperty("connectTimeout", "5");
                readinessDb = DriverManager.getConnection(url, p);
            }
            try (PreparedStatement st = readinessDb.prepareStatement("SELECT r.client_port FROM pg_replication_slots s "
                    + "JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = ?")) {
                st.setString(1, engineProps.getProperty("slot.name", "debezium"));
                try (ResultSet rs = st.executeQuery()) {
                    if (!rs.next()) {
                        return false;
                    }
                    int port = rs.getInt(1);
                    Set<Integer> own = ownTcpPorts();
                    // A Unix-socket connection (port -1) or a system without /proc cannot be told
                    // apart: then an active slot has to do.
                    return port <= 0 || own == null || own.contains(port);
                }
            }
        }
        catch (SQLException e) {
            closeQuietly(readinessDb);
            readinessDb = null;
            return null;
        }
    }

    /** Local ports of this process's TCP sockets (Linux: /proc/self/fd and /proc/net/tcp*), or null. */
    private static Set<Integer> ownTcpPorts() {
        try {
            Set<String> inodes = new HashSet<>();
            try (DirectoryStream<Path> fds = Files.newDirectoryStream(Path.of("/proc/self/fd"))) {
                for (Path fd : fds) {
                    try {
                        String target = Files.readSymbolicLink(fd).toString(); // "socket:[12345]"
                        if (target.startsWith("socket:[")) {
                            inodes.add(target.substring(8, target.length() - 1));
                        }
                    }
                    catch (IOException ignored) {
                        // closed meanwhile
                    }
                }
            }
            Set<Integer> ports = new HashSet<>();
            for (String table : List.of("/proc/net/tcp", "/proc/net/tcp6")) {
                Path path = Path.of(table);
                if (!Files.exists(path)) {
                    continue;
                }
                // "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ..."
                for (String line : Files.readAllLines(path)) {
                    String[] f = line.trim().split("\\s+");
                    if (f.length > 9 && inodes.contains(f[9])) {
                        String local = f[1];
                        ports.add(Integer.parseInt(local.substring(local.indexOf(':') + 1), 16));
                    }
                }
            }
            return ports;
        }
        catch (IOException | RuntimeException e) {
            return null;
        }
    }

    private static void closeQuietly(AutoCloseable c) {
        if (c != null) {
            try {
                c.close();
            }
            catch (Exception ignored) {
                // nothing to do
            }
        }
    }

    private void printProgress() {
        emit("DEBEZIUM-PROGRESS produced=" + produced.get() + " acked=" + acked.get());
    }

    private static synchronized void emit(String line) {
        PrintStream out = System.out;
        out.println(line);
        out.flush();
    }

    // ------------------------------------------------------------------------------------------
    // Small helpers

    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
        for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
            sb.append(": ").append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        while (true) {
            try {
                latch.await();
                return;
            }
            catch (InterruptedException ignored) {
                // keep waiting: only a stop request ends the run
            }
        }
    }
}
