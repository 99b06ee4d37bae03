package canalrs.bench;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;

import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningData;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningListener;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningMonitor;
import com.alibaba.otter.canal.common.zookeeper.running.ServerRunningMonitors;
import com.alibaba.otter.canal.instance.spring.SpringCanalInstanceGenerator;
import com.alibaba.otter.canal.server.embedded.CanalServerWithEmbedded;
import com.alibaba.otter.canal.server.netty.CanalServerWithNetty;

/**
 * Starts canal's own server for one destination, standalone, in TCP mode: canal's embedded server with a Spring
 * instance generator behind canal's Netty server, on the address of {@code canal.ip}:{@code canal.port}.
 *
 * <p>Maven Central has no canal.deployer jar past 1.1.4, so this stands in for the deployer's launcher (which only
 * reads canal.properties and wires these same parts together). It reads the file named by {@code -Dcanal.conf}
 * and honours the keys the deployer reads for this set-up: canal.ip, canal.port, canal.destinations (one name),
 * canal.instance.global.spring.xml and canal.instance.global.lazy. With lazy = true, as make bench runs it, the
 * instance (and so the binlog dump) starts when the first client subscribes, as in canal's deployer.
 */
public final class CanalServerMain {

    private CanalServerMain() {
    }

    private static String property(Properties properties, String key, String fallback) {
        String value = System.getProperty(key, properties.getProperty(key));
        value = value == null ? "" : value.trim();
        return value.isEmpty() ? fallback : value;
    }

    public static void main(String[] args) throws Exception {
        String conf = System.getProperty("canal.conf");
        if (conf == null) {
            System.err.println("usage: java -Dcanal.conf=CANAL_PROPERTIES -cp CONF_DIRS:LIBS canalrs.bench.CanalServerMain");
            System.exit(2);
        }
        Properties properties = new Properties();
        try (InputStream in = new FileInputStream(conf)) {
            properties.load(in);
        }
        String ip = property(properties, "canal.ip", "127.0.0.1");
        int port = Integer.parseInt(property(properties, "canal.port", "11111"));
        final String destination = property(properties, "canal.destinations", "");
        if (destination.isEmpty() || destination.contains(",")) {
            throw new IllegalArgumentException("canal.destinations must name exactly one destination");
        }
        String springXml = property(properties, "canal.instance.global.spring.xml", "");
        boolean lazy = Boolean.parseBoolean(property(properties, "canal.instance.global.lazy", "false"));

        SpringCanalInstanceGenerator generator = new SpringCanalInstanceGenerator();
        generator.setSpringXml(springXml);
        final CanalServerWithEmbedded embedded = CanalServerWithEmbedded.instance();
        embedded.setCanalInstanceGenerator(generator);

        // Without ZooKeeper a running monitor starts and stops the instance directly; the Netty session handler asks
        // it to start the destination on the first subscription when it is not running yet.
        ServerRunningData serverData = new ServerRunningData(ip + ":" + port);
        ServerRunningMonitors.setServerData(serverData);
        final ServerRunningMonitor monitor = new ServerRunningMonitor(serverData);
        monitor.setDestination(destination);
        monitor.setListener(new ServerRunningListener() {

            public void processStart() {
            }

            public void processStop() {
            }

            public void processActiveEnter() {
                embedded.start(destination);
            }

            public void processActiveExit() {
                embedded.stop(destination);
            }
        });
        monitor.init();
        Map<String, ServerRunningMonitor> monitors = new ConcurrentHashMap<String, ServerRunningMonitor>();
        monitors.put(destination, monitor);
        ServerRunningMonitors.setRunningMonitors(monitors);

        embedded.start();
        if (!lazy) {
            monitor.start();
        }
        final CanalServerWithNetty server = CanalServerWithNetty.instance();
        server.setIp(ip);
        server.setPort(port);
        server.start();
        System.out.println("canal server listening on " + ip + ":" + port + ", destination " + destination
                           + (lazy ? " (starts on first subscription)" : ""));

        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(new Runnable() {

            public void run() {
                try {
                    server.stop();
                    if (monitor.isStart()) {
                        monitor.stop();
                    }
                    embedded.stop();
                } catch (Throwable e) {
                    e.printStackTrace();
                } finally {
                    stopped.countDown();
                }
            }
        }, "canal-bench-shutdown"));
        stopped.await();
    }
}
