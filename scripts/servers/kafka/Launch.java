// Starts one Kafka broker in KRaft mode (broker and controller in one
// process) for sidelog's test suite.
//
// Usage: java -Dlog4j2.configurationFile=log4j2.yaml -cp 'lib/*:classes' Launch HOME PORTFILE
// It picks two free ports on 127.0.0.1 (broker and controller), writes
// HOME/server.properties, formats HOME/data as a standalone controller with a
// random cluster id (what `kafka-storage.sh format --standalone` does), starts
// the broker, waits until an admin client sees it, and writes the broker port
// to PORTFILE. Kafka closes itself on SIGTERM. scripts/servers/server.sh runs it.
//
// A secured listener: when HOME/client.properties exists (written by
// internal/testservers before the first start), the broker's first listener
// CLIENT uses its sidelog.protocol (SASL_PLAINTEXT, SSL or SASL_SSL) and a
// second listener INTERNAL stays PLAINTEXT (inter-broker traffic, the
// readiness check, the test's admin calls; its port goes to PORTFILE.internal);
// every other key of the file is added to server.properties (JAAS configs,
// ssl.keystore.*), and sidelog.scram (SCRAM-SHA-256=[name=u,password=p],
// separated by ';') adds SCRAM users when the storage is formatted.
//
// A restart: when HOME/server.properties exists (written by an earlier run on
// the same HOME), it is used as it is: the broker comes back on the same
// ports, with the same cluster id and data (internal/testservers' private
// brokers restart this way; server.sh always starts on a fresh HOME).
import java.io.IOException;
import java.io.PrintStream;
import java.io.Writer;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Uuid;

public final class Launch {
    static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            return s.getLocalPort();
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Launch HOME PORTFILE");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Path portFile = Paths.get(args[1]).toAbsolutePath();
        Path data = home.resolve("data");
        Files.createDirectories(home);

        Path config = home.resolve("server.properties");
        if (Files.exists(config)) {
            Properties p = new Properties();
            try (java.io.Reader r = Files.newBufferedReader(config, StandardCharsets.UTF_8)) {
                p.load(r);
            }
            run(config, p, portFile, "restarted");
            return;
        }

        int broker = freePort();
        int controller = freePort();
        while (controller == broker) {
            controller = freePort();
        }
        Properties client = new Properties();
        Path clientFile = home.resolve("client.properties");
        if (Files.exists(clientFile)) {
            try (java.io.Reader r = Files.newBufferedReader(clientFile, StandardCharsets.UTF_8)) {
                client.load(r);
            }
        }
        String protocol = client.getProperty("sidelog.protocol");
        Properties p = new Properties();
        p.setProperty("process.roles", "broker,controller");
        p.setProperty("node.id", "1");
        p.setProperty("controller.quorum.bootstrap.servers", "127.0.0.1:" + controller);
        if (protocol == null) {
            p.setProperty("listeners", "PLAINTEXT://127.0.0.1:" + broker + ",CONTROLLER://127.0.0.1:" + controller);
            p.setProperty("advertised.listeners", "PLAINTEXT://127.0.0.1:" + broker + ",CONTROLLER://127.0.0.1:" + controller);
            p.setProperty("inter.broker.listener.name", "PLAINTEXT");
            p.setProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT");
        } else {
            int internal = freePort();
            while (internal == broker || internal == controller) {
                internal = freePort();
            }
            String ls = "CLIENT://127.0.0.1:" + broker + ",INTERNAL://127.0.0.1:" + internal + ",CONTROLLER://127.0.0.1:" + controller;
            p.setProperty("listeners", ls);
            p.setProperty("advertised.listeners", ls);
            p.setProperty("inter.broker.listener.name", "INTERNAL");
            p.setProperty("listener.security.protocol.map", "CLIENT:" + protocol + ",INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT");
        }
        p.setProperty("controller.listener.names", "CONTROLLER");
        p.setProperty("log.dirs", data.toString());
        // One broker: every internal topic has one replica.
        p.setProperty("offsets.topic.replication.factor", "1");
        p.setProperty("offsets.topic.num.partitions", "4");
        p.setProperty("transaction.state.log.replication.factor", "1");
        p.setProperty("transaction.state.log.min.isr", "1");
        p.setProperty("transaction.state.log.num.partitions", "4");
        p.setProperty("share.coordinator.state.topic.replication.factor", "1");
        p.setProperty("share.coordinator.state.topic.min.isr", "1");
        p.setProperty("default.replication.factor", "1");
        p.setProperty("min.insync.replicas", "1");
        p.setProperty("num.partitions", "1");
        p.setProperty("auto.create.topics.enable", "true");
        p.setProperty("group.initial.rebalance.delay.ms", "0");
        p.setProperty("num.network.threads", "2");
        p.setProperty("num.io.threads", "2");
        p.setProperty("log.flush.interval.messages", "9223372036854775807");
        for (String k : client.stringPropertyNames()) {
            if (!k.startsWith("sidelog.")) {
                p.setProperty(k, client.getProperty(k));
            }
        }
        try (Writer w = Files.newBufferedWriter(config, StandardCharsets.UTF_8)) {
            p.store(w, "written by scripts/servers/kafka/Launch.java");
        }

        String clusterId = Uuid.randomUuid().toString();
        java.util.List<String> format = new java.util.ArrayList<>(java.util.List.of(
            "format", "--config", config.toString(), "--cluster-id", clusterId, "--standalone", "--ignore-formatted"));
        for (String scram : client.getProperty("sidelog.scram", "").split(";")) {
            if (!scram.isEmpty()) {
                format.add("--add-scram");
                format.add(scram);
            }
        }
        int rc = kafka.tools.StorageTool.execute(format.toArray(new String[0]),
            new PrintStream(System.out, true, StandardCharsets.UTF_8));
        if (rc != 0) {
            System.err.println("sidelog: kafka storage format failed with " + rc);
            System.exit(1);
        }

        run(config, p, portFile, "cluster " + clusterId);
    }

    // port returns the port of listener name in listeners (-1: none).
    static int port(String listeners, String name) {
        for (String l : listeners.split(",")) {
            if (l.startsWith(name + "://")) {
                return Integer.parseInt(l.substring(l.lastIndexOf(':') + 1));
            }
        }
        return -1;
    }

    // run starts the broker of config (whose properties are p), waits until
    // an admin client sees it on its plaintext listener, writes the client
    // port to portFile (and the internal one to portFile.internal) and waits
    // for the broker's end.
    static void run(Path config, Properties p, Path portFile, String what) throws Exception {
        String ls = p.getProperty("listeners", "");
        int broker = port(ls, "PLAINTEXT");
        int plain = broker;
        if (broker < 0) {
            broker = port(ls, "CLIENT");
            plain = port(ls, "INTERNAL");
            Path tmp = portFile.resolveSibling(portFile.getFileName() + ".internal.tmp");
            Files.write(tmp, (plain + "\n").getBytes(StandardCharsets.UTF_8));
            Files.move(tmp, portFile.resolveSibling(portFile.getFileName() + ".internal"), StandardCopyOption.ATOMIC_MOVE);
        }
        Thread server = new Thread(() -> kafka.Kafka.main(new String[] {config.toString()}), "sidelog-kafka-main");
        server.start();

        Properties ap = new Properties();
        ap.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, "127.0.0.1:" + plain);
        ap.setProperty(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(5);
        try (Admin admin = Admin.create(ap)) {
            while (true) {
                try {
                    int nodes = admin.describeCluster().nodes().get(15, TimeUnit.SECONDS).size();
                    if (nodes > 0) {
                        break;
                    }
                } catch (Exception e) {
                    if (System.nanoTime() > deadline) {
                        System.err.println("sidelog: kafka did not answer: " + e);
                        System.exit(1);
                    }
                }
                Thread.sleep(200);
            }
        }
        Path tmp = portFile.resolveSibling(portFile.getFileName() + ".tmp");
        Files.write(tmp, (broker + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE);
        System.out.println("sidelog: kafka broker on 127.0.0.1:" + broker + " (" + what + ")");
        server.join();
    }
}
