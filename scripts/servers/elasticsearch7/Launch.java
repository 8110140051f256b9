// Starts one Elasticsearch 7.17 node inside this JVM for sidelog's test suite, the way
// Elasticsearch's own test framework does (MockNode): a Node built with its
// plugins given as classes on the classpath, so no distribution is needed. Only the netty4 transport is loaded.
//
// Usage: java -cp 'lib/*:classes' Launch HOME PORTFILE
// It binds HTTP and transport on ephemeral ports of 127.0.0.1, writes the
// HTTP port to PORTFILE once the node has started, and closes the node on
// SIGTERM. scripts/servers/server.sh runs it; nothing else should.
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.node.Node;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.transport.Netty4Plugin;

public final class Launch {
    static final class TestNode extends Node {
        TestNode(Environment env, List<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: Launch HOME PORTFILE");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Path portFile = Paths.get(args[1]).toAbsolutePath();
        Files.createDirectories(home.resolve("config"));
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));

        Settings settings = Settings.builder()
            .put("cluster.name", "sidelog-test")
            .put("node.name", "sidelog-test-node")
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", "0")
            .put("transport.port", "0")
            // Tests create many small indices with unique names.
            .put("cluster.max_shards_per_node", 100000)
            // A nearly full disk must not turn the test indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("logger.level", "WARN")
            .build();
        LogConfigurator.configureWithoutConfig(settings);
        Environment env = new Environment(settings, home.resolve("config"));
        Node node = new TestNode(env, List.of(Netty4Plugin.class));

        CountDownLatch closed = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            }
            closed.countDown();
        }, "sidelog-close-node"));

        node.start();
        int port = node.injector().getInstance(HttpServerTransport.class)
            .boundAddress().publishAddress().getPort();
        Path tmp = portFile.resolveSibling(portFile.getFileName() + ".tmp");
        Files.write(tmp, (port + "\n").getBytes(StandardCharsets.UTF_8));
        Files.move(tmp, portFile, StandardCopyOption.ATOMIC_MOVE);
        System.out.println("sidelog: elasticsearch7 http on 127.0.0.1:" + port);
        closed.await();
    }
}
