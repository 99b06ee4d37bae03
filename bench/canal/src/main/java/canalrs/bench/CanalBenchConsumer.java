package canalrs.bench;

import java.net.InetSocketAddress;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import com.alibaba.otter.canal.client.CanalConnector;
import com.alibaba.otter.canal.client.CanalConnectors;
import com.alibaba.otter.canal.client.impl.SimpleCanalConnector;
import com.alibaba.otter.canal.protocol.CanalEntry.Entry;
import com.alibaba.otter.canal.protocol.CanalEntry.EntryType;
import com.alibaba.otter.canal.protocol.CanalEntry.RowChange;
import com.alibaba.otter.canal.protocol.Message;

/**
 * The consumer of make bench's canal peer, on canal's own client library: connects to a canal server, subscribes
 * to DESTINATION, takes batches of up to 1000 (MEMSIZE units) with getWithoutAck, waiting at most 100 ms for a
 * batch as canal-bench's canal-rs client does, acknowledges each, and counts the row changes (ROWDATA entries that
 * are not DDL) of the binlog files FILES, read from the first one's start. When ROWS have arrived it prints
 * {"rows": N, "seconds": S, "subscribe_seconds": T, "mislabelled_entries": M} as its last stdout line. The clock
 * runs from the subscription (which starts a lazy destination, and so the dump) to the last acknowledgement, so
 * neither JVM's start-up counts; T is the part of S that the subscription itself took (the destination's start).
 *
 * <p>Which file an entry comes from is not taken from its header: on MariaDB canal names the file after the last
 * BINLOG_CHECKPOINT event, which holds the oldest binlog still needed for crash recovery and is often an earlier
 * file. Offsets are right, though, and restart at each new file, so the consumer counts a new file whenever the
 * offset falls back. M is the number of row entries whose header named another file than the one they came from.
 *
 * <p>usage: CanalBenchConsumer HOST PORT DESTINATION ROWS TIMEOUT_SECONDS FILE...
 */
public final class CanalBenchConsumer {

    private CanalBenchConsumer() {
    }

    /** Where the stream stands: which of the workload's files, and the last offset seen in it. */
    private static final class Stream {

        final List<String> files;
        int file;
        long lastOffset = -1;
        long rows;
        long mislabelled;

        Stream(List<String> files) {
            this.files = files;
        }

        void add(List<Entry> entries) throws Exception {
            for (Entry entry : entries) {
                long offset = entry.getHeader().getLogfileOffset();
                if (offset < lastOffset) {
                    file++;
                }
                lastOffset = offset;
                if (file >= files.size() || entry.getEntryType() != EntryType.ROWDATA) {
                    continue;
                }
                if (!files.get(file).equals(entry.getHeader().getLogfileName())) {
                    mislabelled++;
                }
                RowChange change = RowChange.parseFrom(entry.getStoreValue());
                if (!change.getIsDdl()) {
                    rows += change.getRowDatasCount();
                }
            }
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            System.err.println("usage: CanalBenchConsumer HOST PORT DESTINATION ROWS TIMEOUT_SECONDS FILE...");
            System.exit(2);
        }
        InetSocketAddress address = new InetSocketAddress(args[0], Integer.parseInt(args[1]));
        String destination = args[2];
        long wanted = Long.parseLong(args[3]);
        long timeoutNanos = TimeUnit.SECONDS.toNanos(Long.parseLong(args[4]));
        Stream stream = new Stream(Arrays.asList(args).subList(5, args.length));

        CanalConnector connector = CanalConnectors.newSingleConnector(address, destination, "", "");
        // By default connect() also sends a rollback, whose reply it does not read. Against a lazy destination that
        // has not started yet the server answers it with an error, which the subscription below would then read as
        // its own answer. A fresh client has nothing to roll back, so leave it out.
        ((SimpleCanalConnector) connector).setRollbackOnConnect(false);
        connector.connect();
        long started = System.nanoTime();
        connector.subscribe();
        double subscribeSeconds = (System.nanoTime() - started) / 1e9;
        while (stream.rows < wanted) {
            if (System.nanoTime() - started > timeoutNanos) {
                System.err.println("only " + stream.rows + " of " + wanted + " rows after " + args[4] + " s");
                System.exit(1);
            }
            Message message = connector.getWithoutAck(1000, 100L, TimeUnit.MILLISECONDS);
            long batchId = message.getId();
            if (batchId == -1) {
                continue;
            }
            stream.add(message.getEntries());
            connector.ack(batchId);
        }
        double seconds = (System.nanoTime() - started) / 1e9;
        connector.disconnect();
        System.out.println("{\"rows\": " + stream.rows + ", \"seconds\": " + seconds + ", \"subscribe_seconds\": "
                           + subscribeSeconds + ", \"mislabelled_entries\": " + stream.mislabelled + "}");
    }
}
