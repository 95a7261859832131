package dev.procon.compat;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Prints a topic from its beginning as {@code key<TAB>value} lines (UTF-8; a null key or value is
 * printed as {@code null}) and exits once no record arrived for IDLE_MS (default 3000). With
 * {@code --headers} a third column lists the headers as {@code name=value;name=value}.
 *
 * <pre>java -cp debezium-runner.jar dev.procon.compat.TopicDump BROKERS TOPIC [IDLE_MS] [--headers]</pre>
 *
 * No consumer group is used (partitions are assigned, nothing is committed), so it can be run
 * any number of times without leaving state in the broker.
 */
public final class TopicDump {

    public static void main(String[] args) {
        List<String> pos = new ArrayList<>();
        boolean withHeaders = false;
        for (String a : args) {
            if (a.equals("--headers")) {
                withHeaders = true;
            }
            else {
                pos.add(a);
            }
        }
        if (pos.size() < 2 || pos.size() > 3) {
            System.err.println("usage: TopicDump BROKERS TOPIC [IDLE_MS] [--headers]");
            System.exit(2);
        }
        DebeziumRunner.configureLogging("warn");
        String topic = pos.get(1);
        long idleMs = pos.size() == 3 ? Long.parseLong(pos.get(2)) : 3000;

        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, pos.get(0));
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.CLIENT_ID_CONFIG, "procon-topic-dump");

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<PartitionInfo> parts = consumer.partitionsFor(topic, Duration.ofMillis(Math.max(idleMs, 1000)));
            if (parts == null || parts.isEmpty()) {
                System.err.println("TopicDump: topic " + topic + " does not exist");
                System.exit(1);
            }
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : parts) {
                tps.add(new TopicPartition(topic, pi.partition()));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);

            StringBuilder out = new StringBuilder();
            long lastRecord = System.nanoTime();
            while (System.nanoTime() - lastRecord < idleMs * 1_000_000L) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    out.setLength(0);
                    out.append(text(r.key())).append('\t').append(text(r.value()));
                    if (withHeaders) {
                        out.append('\t');
                        String sep = "";
                        for (Header h : r.headers()) {
                            out.append(sep).append(h.key()).append('=').append(text(h.value()));
                            sep = ";";
                        }
                    }
                    System.out.println(out);
                }
                if (!batch.isEmpty()) {
                    lastRecord = System.nanoTime();
                }
            }
            System.out.flush();
        }
    }

    private static String text(byte[] b) {
        return b == null ? "null" : new String(b, StandardCharsets.UTF_8);
    }
}
