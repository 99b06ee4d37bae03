package canalrs.mq;

import java.lang.reflect.Field;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.MockProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

import com.alibaba.otter.canal.client.CanalConnectors;
import com.alibaba.otter.canal.client.impl.SimpleCanalConnector;
import com.alibaba.otter.canal.connector.core.producer.MQDestination;
import com.alibaba.otter.canal.connector.core.util.Callback;
import com.alibaba.otter.canal.connector.kafka.producer.CanalKafkaProducer;
import com.alibaba.otter.canal.connector.kafka.producer.KafkaMessageSerializer;
import com.alibaba.otter.canal.protocol.CanalEntry;
import com.alibaba.otter.canal.protocol.Message;
import com.google.protobuf.ByteString;

/**
 * Prints the Kafka records canal 1.1.7's Kafka producer would send for the batches a canal server (canal-rs) serves.
 *
 * <p>Each batch is handed, unchanged, to canal's own {@link CanalKafkaProducer#send(MQDestination, Message, Callback)}
 * whose Kafka client is replaced by kafka-clients' {@link MockProducer}, which keeps the records instead of sending
 * them. Everything that decides topic, partition, key and value is canal's code; this class only fetches batches,
 * configures the producer and prints what it produced. See README.md.
 */
public final class MqOracle {

    private static final String USAGE = "usage: MqOracle --server HOST:PORT --destination D --until-table SCHEMA.TABLE"
                                        + " [--prop KEY=VALUE]... [--username U] [--password P]"
                                        + " [--timeout-seconds N]";

    /** A discard address: the producer's real Kafka client is created by canal's init and closed unused. */
    private static final String UNUSED_BOOTSTRAP = "127.0.0.1:9";

    private MqOracle() {
    }

    public static void main(String[] args) {
        int code;
        try {
            code = run(args);
        } catch (UsageException e) {
            System.err.println(e.getMessage());
            System.err.println(USAGE);
            code = 2;
        } catch (Throwable e) {
            System.err.println("MqOracle failed: " + e);
            e.printStackTrace();
            code = 1;
        }
        System.out.flush();
        // canal's producer keeps executor threads; exit explicitly.
        System.exit(code);
    }

    private static final class UsageException extends Exception {

        private static final long serialVersionUID = 1L;

        UsageException(String message) {
            super(message);
        }
    }

    private static int run(String[] args) throws Exception {
        String server = null;
        String destinationName = null;
        String untilTable = null;
        String username = "";
        String password = "";
        long timeoutSeconds = 120;
        Properties props = new Properties();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (i + 1 >= args.length) {
                throw new UsageException("missing value after " + arg);
            }
            String value = args[++i];
            switch (arg) {
                case "--server":
                    server = value;
                    break;
                case "--destination":
                    destinationName = value;
                    break;
                case "--until-table":
                    untilTable = value;
                    break;
                case "--username":
                    username = value;
                    break;
                case "--password":
                    password = value;
                    break;
                case "--timeout-seconds":
                    timeoutSeconds = Long.parseLong(value);
                    break;
                case "--prop": {
                    int eq = value.indexOf('=');
                    if (eq <= 0) {
                        throw new UsageException("--prop wants KEY=VALUE, got " + value);
                    }
                    props.setProperty(value.substring(0, eq).trim(), value.substring(eq + 1).trim());
                    break;
                }
                default:
                    throw new UsageException("unknown argument " + arg);
            }
        }
        if (server == null || destinationName == null || untilTable == null) {
            throw new UsageException("--server, --destination and --until-table are required");
        }
        int colon = server.lastIndexOf(':');
        if (colon <= 0) {
            throw new UsageException("--server wants HOST:PORT, got " + server);
        }
        InetSocketAddress address = new InetSocketAddress(server.substring(0, colon),
            Integer.parseInt(server.substring(colon + 1)));

        MQDestination destination = destination(destinationName, props);
        CanalKafkaProducer producer = new CanalKafkaProducer();
        MockProducer<String, byte[]> records = initProducer(producer, props);
        boolean flat = producer.getMqProperties().isFlatMessage();
        int batchSize = producer.getMqProperties().getBatchSize();
        Integer fetchTimeout = producer.getMqProperties().getFetchTimeout();

        SimpleCanalConnector connector = (SimpleCanalConnector) CanalConnectors.newSingleConnector(address,
            destinationName,
            username,
            password);
        // Raw entries, as canal's server hands batches to its MQ producer (its memory store keeps entries as bytes:
        // canal.instance.memory.rawEntry defaults to true), so the producer sees exactly the bytes canal-rs sent.
        connector.setLazyParseEntry(true);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds);
        try {
            connector.connect();
            connector.subscribe();
            while (true) {
                if (System.nanoTime() > deadline) {
                    System.err.println("MqOracle: no row of " + untilTable + " within " + timeoutSeconds + " s");
                    return 1;
                }
                Message message = fetchTimeout != null && fetchTimeout > 0 ? connector.getWithoutAck(batchSize,
                    fetchTimeout.longValue(),
                    TimeUnit.MILLISECONDS) : connector.getWithoutAck(batchSize);
                long batchId = message.getId();
                int size = message.isRaw() ? message.getRawEntries().size() : message.getEntries().size();
                if (batchId == -1 || size == 0) {
                    // canal's MQ worker sends nothing for an empty batch and polls again 100 ms later.
                    Thread.sleep(100);
                    continue;
                }
                boolean last = hasRowOf(message, untilTable);
                printEntries(batchId, message);
                records.clear();
                Outcome outcome = new Outcome(connector, batchId);
                producer.send(destination, message, outcome);
                if (!outcome.committed) {
                    System.err.println("MqOracle: canal's producer rolled back batch " + batchId
                                       + (outcome.ackError != null ? " (ack failed: " + outcome.ackError + ")"
                                           : " (its error is logged above)"));
                    return 1;
                }
                print(batchId, records.history(), flat);
                if (last) {
                    return 0;
                }
            }
        } finally {
            try {
                connector.disconnect();
            } catch (Throwable ignored) {
                // exiting anyway
            }
            producer.stop();
        }
    }

    /**
     * The instance-level MQ settings, named as in canal's instance.properties (canal's spring config copies them into
     * CanalMQConfig and CanalMQStarter copies that into an MQDestination; an empty value is null there too).
     */
    private static MQDestination destination(String canalDestination, Properties props) {
        MQDestination destination = new MQDestination();
        destination.setCanalDestination(canalDestination);
        // canal's example instance.properties sets canal.mq.topic=example; used when none is given.
        destination.setTopic(props.getProperty("canal.mq.topic", "example"));
        destination.setPartition(integer(props, "canal.mq.partition"));
        destination.setPartitionsNum(integer(props, "canal.mq.partitionsNum"));
        destination.setPartitionHash(string(props, "canal.mq.partitionHash"));
        destination.setDynamicTopic(string(props, "canal.mq.dynamicTopic"));
        destination.setDynamicTopicPartitionNum(string(props, "canal.mq.dynamicTopicPartitionNum"));
        String queuePartition = string(props, "canal.mq.enableDynamicQueuePartition");
        destination.setEnableDynamicQueuePartition(queuePartition == null ? null : Boolean.valueOf(queuePartition));
        return destination;
    }

    private static String string(Properties props, String key) {
        String value = props.getProperty(key);
        return value == null || value.trim().isEmpty() ? null : value.trim();
    }

    private static Integer integer(Properties props, String key) {
        String value = string(props, key);
        return value == null ? null : Integer.valueOf(value);
    }

    /**
     * Runs canal's own init (server-level settings: canal.mq.flatMessage, canal.mq.database.hash,
     * canal.instance.filter.transaction.entry, canal.mq.canalBatchSize, ...) and swaps the Kafka client it created for
     * a MockProducer with the same serializers, which records what canal hands to Kafka.
     */
    @SuppressWarnings("unchecked")
    private static MockProducer<String, byte[]> initProducer(CanalKafkaProducer producer, Properties props)
                                                                                                             throws Exception {
        Properties init = new Properties();
        init.putAll(props);
        if (init.getProperty("kafka.bootstrap.servers") == null && init.getProperty("canal.mq.servers") == null) {
            init.setProperty("kafka.bootstrap.servers", UNUSED_BOOTSTRAP);
        }
        producer.init(init);
        Field field = CanalKafkaProducer.class.getDeclaredField("producer");
        field.setAccessible(true);
        Producer<String, byte[]> kafka = (Producer<String, byte[]>) field.get(producer);
        kafka.close(Duration.ZERO);
        MockProducer<String, byte[]> mock = new MockProducer<>(true,
            new StringSerializer(),
            new KafkaMessageSerializer());
        field.set(producer, mock);
        return mock;
    }

    /** Acks on commit, as canal's MQ worker does; remembers whether canal's producer committed. */
    private static final class Outcome implements Callback {

        private final SimpleCanalConnector connector;
        private final long                 batchId;
        boolean                            committed;
        Throwable                          ackError;

        Outcome(SimpleCanalConnector connector, long batchId) {
            this.connector = connector;
            this.batchId = batchId;
        }

        @Override
        public void commit() {
            try {
                connector.ack(batchId);
                committed = true;
            } catch (Throwable e) {
                ackError = e;
            }
        }

        @Override
        public void rollback() {
            try {
                connector.rollback(batchId);
            } catch (Throwable ignored) {
                // failing anyway
            }
        }
    }

    /** Whether the batch holds a row change (not DDL) of `schema.table`. */
    private static boolean hasRowOf(Message message, String schemaTable) throws Exception {
        List<CanalEntry.Entry> entries = new ArrayList<>();
        if (message.isRaw()) {
            for (ByteString raw : message.getRawEntries()) {
                entries.add(CanalEntry.Entry.parseFrom(raw));
            }
        } else {
            entries.addAll(message.getEntries());
        }
        for (CanalEntry.Entry entry : entries) {
            if (entry.getEntryType() != CanalEntry.EntryType.ROWDATA) {
                continue;
            }
            CanalEntry.Header header = entry.getHeader();
            if (!(header.getSchemaName() + "." + header.getTableName()).equalsIgnoreCase(schemaTable)) {
                continue;
            }
            CanalEntry.RowChange change = CanalEntry.RowChange.parseFrom(entry.getStoreValue());
            if (!change.getIsDdl() && change.getRowDatasCount() > 0) {
                return true;
            }
        }
        return false;
    }

    /**
     * One JSON line per record. Records of one topic keep canal's order; with a dynamic topic canal sends each topic
     * from its own thread, so the order across topics is not defined and the lines are grouped by topic (stable).
     */
    private static void print(long batchId, List<ProducerRecord<String, byte[]>> sent, boolean flat) {
        List<ProducerRecord<String, byte[]>> records = new ArrayList<>(sent);
        records.sort(Comparator.comparing(ProducerRecord::topic));
        StringSerializer keySerializer = new StringSerializer();
        KafkaMessageSerializer valueSerializer = new KafkaMessageSerializer();
        StringBuilder out = new StringBuilder();
        for (ProducerRecord<String, byte[]> record : records) {
            // The bytes the real KafkaProducer would put on the wire: its serializers applied to key and value.
            byte[] key = keySerializer.serialize(record.topic(), record.key());
            byte[] value = valueSerializer.serialize(record.topic(), record.value());
            out.setLength(0);
            out.append("{\"batch\":").append(batchId);
            out.append(",\"topic\":");
            quote(out, record.topic());
            out.append(",\"partition\":").append(record.partition());
            out.append(",\"key\":");
            quote(out, key == null ? null : new String(key, StandardCharsets.UTF_8));
            if (flat) {
                out.append(",\"value\":");
                quote(out, value == null ? null : new String(value, StandardCharsets.UTF_8));
            } else {
                out.append(",\"valueBase64\":");
                quote(out, value == null ? null : Base64.getEncoder().encodeToString(value));
            }
            out.append('}');
            System.out.println(out);
        }
        System.out.flush();
    }

    /**
     * The batch as canal's producer received it, one line before its records: {@code {"batch":N,"entries":[base64,
     * ...]}}, so that another implementation can be given exactly the same entries.
     */
    private static void printEntries(long batchId, Message message) {
        StringBuilder out = new StringBuilder("{\"batch\":").append(batchId).append(",\"entries\":[");
        List<ByteString> entries = new ArrayList<>();
        if (message.isRaw()) {
            entries.addAll(message.getRawEntries());
        } else {
            for (CanalEntry.Entry entry : message.getEntries()) {
                entries.add(entry.toByteString());
            }
        }
        for (int i = 0; i < entries.size(); i++) {
            if (i > 0) {
                out.append(',');
            }
            out.append('"').append(Base64.getEncoder().encodeToString(entries.get(i).toByteArray())).append('"');
        }
        out.append("]}");
        System.out.println(out);
    }

    private static void quote(StringBuilder out, String s) {
        if (s == null) {
            out.append("null");
            return;
        }
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"':
                    out.append("\\\"");
                    break;
                case '\\':
                    out.append("\\\\");
                    break;
                case '\n':
                    out.append("\\n");
                    break;
                case '\r':
                    out.append("\\r");
                    break;
                case '\t':
                    out.append("\\t");
                    break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }
}
