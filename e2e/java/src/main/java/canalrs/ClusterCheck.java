package canalrs;

import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import com.alibaba.otter.canal.client.CanalConnector;
import com.alibaba.otter.canal.client.CanalConnectors;
import com.alibaba.otter.canal.protocol.CanalEntry.Column;
import com.alibaba.otter.canal.protocol.CanalEntry.Entry;
import com.alibaba.otter.canal.protocol.CanalEntry.EntryType;
import com.alibaba.otter.canal.protocol.CanalEntry.EventType;
import com.alibaba.otter.canal.protocol.CanalEntry.Header;
import com.alibaba.otter.canal.protocol.CanalEntry.RowChange;
import com.alibaba.otter.canal.protocol.CanalEntry.RowData;
import com.alibaba.otter.canal.protocol.Message;

/**
 * canal's own Java cluster client against canal-rs: finds the active instance through ZooKeeper
 * (ClusterCanalConnector), subscribes with the server's filter, and gets and acks until it has seen the expected
 * number of row changes.
 *
 * <p>Usage: {@code ClusterCheck <zkServers> <destination> <expectedRows> <timeoutSeconds>}
 *
 * <p>stdout, one line each: {@code CONNECTED}, {@code ROW <schema> <table> <eventType> <id>} per row change (the
 * value of the column {@code id}, else of the first key column, before image for DELETE), {@code ACK <batchId>
 * <rows>} after each acked batch, {@code CONFIRMED <batchId>} when the next GET after that ack was
 * answered (acks get no reply; the server handles requests in order, so it has processed the ack, unless the
 * connector reconnected in between), then {@code DONE <rows>} and exit 0. On a timeout or an exception: the reason
 * and stack trace on stderr, exit 1.
 */
public final class ClusterCheck {
    private static volatile int rows;

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println("usage: ClusterCheck <zkServers> <destination> <expectedRows> <timeoutSeconds>");
            System.exit(2);
        }
        String zkServers = args[0];
        String destination = args[1];
        int expected = Integer.parseInt(args[2]);
        long timeoutSeconds = Long.parseLong(args[3]);
        startWatchdog(expected, timeoutSeconds);

        try {
            CanalConnector connector = CanalConnectors.newClusterConnector(zkServers, destination, "", "");
            connector.connect();
            connector.subscribe("");
            out("CONNECTED");
            long unconfirmed = -1;
            while (rows < expected) {
                Message message = connector.getWithoutAck(100, 500L, TimeUnit.MILLISECONDS);
                if (unconfirmed != -1) {
                    out("CONFIRMED " + unconfirmed);
                    unconfirmed = -1;
                }
                long batchId = message.getId();
                if (batchId == -1) {
                    continue;
                }
                int before = rows;
                for (Entry entry : message.getEntries()) {
                    print(entry);
                }
                connector.ack(batchId);
                out("ACK " + batchId + " " + (rows - before));
                unconfirmed = batchId;
            }
            out("DONE " + rows);
            connector.disconnect();
            System.exit(0);
        } catch (Throwable t) {
            System.err.println("FAILED after " + rows + " of " + expected + " rows: " + t);
            t.printStackTrace();
            System.err.flush();
            System.exit(1);
        }
    }

    private static void print(Entry entry) throws Exception {
        if (entry.getEntryType() != EntryType.ROWDATA) {
            return;
        }
        Header header = entry.getHeader();
        RowChange change = RowChange.parseFrom(entry.getStoreValue());
        if (change.getIsDdl()) {
            out("DDL " + header.getSchemaName() + " " + header.getTableName() + " " + change.getEventType());
            return;
        }
        EventType type = change.getEventType();
        for (RowData row : change.getRowDatasList()) {
            List<Column> columns = type == EventType.DELETE ? row.getBeforeColumnsList() : row.getAfterColumnsList();
            out("ROW " + header.getSchemaName() + " " + header.getTableName() + " " + type + " " + id(columns));
            rows++;
        }
    }

    private static String id(List<Column> columns) {
        for (Column column : columns) {
            if (column.getName().equalsIgnoreCase("id")) {
                return column.getValue();
            }
        }
        for (Column column : columns) {
            if (column.getIsKey()) {
                return column.getValue();
            }
        }
        return "-";
    }

    private static void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** Ends the process after the timeout even when a call blocks (the connector retries for up to ~20 s). */
    private static void startWatchdog(int expected, long timeoutSeconds) {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(TimeUnit.SECONDS.toMillis(timeoutSeconds));
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("TIMEOUT after " + timeoutSeconds + " s: " + rows + " of " + expected + " rows");
            for (Map.Entry<Thread, StackTraceElement[]> thread : Thread.getAllStackTraces().entrySet()) {
                System.err.println("thread " + thread.getKey().getName());
                for (StackTraceElement frame : thread.getValue()) {
                    System.err.println("    at " + frame);
                }
            }
            System.err.flush();
            Runtime.getRuntime().halt(1);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }
}
