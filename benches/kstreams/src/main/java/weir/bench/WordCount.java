package weir.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * Kafka Streams word count, the benchmark peer of weir's {@code kafka_wordcount}.
 *
 * <p>Reads UTF-8 lines from {@code --input-topic} (keys ignored), splits each on ASCII
 * whitespace as Rust's {@code str::split_ascii_whitespace} does, counts per word through a
 * repartition topic into the persistent RocksDB store {@code counts}, and for every occurrence
 * writes {@code word -> count} (count as decimal text) to {@code --output-topic}. Record caches
 * are off, so no update is folded into a later one.
 *
 * <p>Prints {@code kstreams: RUNNING} once on stdout when the instance first reaches RUNNING.
 * SIGTERM/SIGINT close it (30 s at most) and exit 0; an uncaught stream exception shuts the
 * client down and exits 1; bad arguments exit 2.
 */
public final class WordCount {
  static final String STORE = "counts";
  static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(30);

  private static final String USAGE =
      "usage: run --brokers HOST:PORT --input-topic T --output-topic T --application-id ID"
          + " --state-dir DIR [--commit-interval-ms N (1000)]"
          + " [--guarantee exactly_once_v2|at_least_once (exactly_once_v2)]"
          + " [--instance N (0): the static member of instance N of the application]";

  private static final List<String> REQUIRED =
      List.of("brokers", "input-topic", "output-topic", "application-id", "state-dir");
  private static final List<String> OPTIONAL = List.of("commit-interval-ms", "guarantee", "instance");

  /** The process's exit status, read by the shutdown hook. */
  private static volatile int exitCode = 0;

  private WordCount() {}

  public static void main(String[] argv) {
    Map<String, String> args = parseArgs(argv);
    String guarantee = args.getOrDefault("guarantee", StreamsConfig.EXACTLY_ONCE_V2);
    if (!guarantee.equals(StreamsConfig.EXACTLY_ONCE_V2)
        && !guarantee.equals(StreamsConfig.AT_LEAST_ONCE)) {
      usageError("--guarantee: expected exactly_once_v2 or at_least_once, got '" + guarantee + "'");
    }
    long commitIntervalMs = 1000;
    String interval = args.get("commit-interval-ms");
    if (interval != null) {
      try {
        commitIntervalMs = Long.parseLong(interval);
      } catch (NumberFormatException e) {
        commitIntervalMs = -1;
      }
      if (commitIntervalMs < 0) {
        usageError("--commit-interval-ms: expected a non-negative integer, got '" + interval + "'");
      }
    }

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("brokers"));
    props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("state-dir"));
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitIntervalMs);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    // No record cache: every count update reaches the store, the changelog and the output.
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0L);
    props.put(
        StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    // Static membership (KIP-345), as a production deployment that restarts in place uses: a
    // restarted instance takes its old member's place at once instead of waiting for the killed
    // member's session to time out (45 s), so recovery measures the state restore, not that wait.
    props.put(
        StreamsConfig.mainConsumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG),
        args.get("application-id") + "-" + args.getOrDefault("instance", "0"));

    Topology topology = topology(args.get("input-topic"), args.get("output-topic"));
    KafkaStreams streams = new KafkaStreams(topology, props);

    AtomicBoolean announced = new AtomicBoolean(false);
    CountDownLatch failed = new CountDownLatch(1);
    streams.setStateListener(
        (newState, oldState) -> {
          if (newState == KafkaStreams.State.RUNNING && announced.compareAndSet(false, true)) {
            System.out.println("kstreams: RUNNING");
            System.out.flush();
          } else if (newState == KafkaStreams.State.ERROR) {
            failed.countDown();
          }
        });
    streams.setUncaughtExceptionHandler(
        e -> {
          System.err.println("kstreams: uncaught stream exception, shutting down:");
          e.printStackTrace(System.err);
          System.err.flush();
          exitCode = 1;
          return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });

    // SIGTERM / SIGINT (and System.exit below): close, then exit with exitCode. A JVM ended
    // by a signal would otherwise exit 143/130 whatever the hook did, hence halt().
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  // Leave the group, so a restart is assigned its tasks at once instead of
                  // waiting out this member's session (session.timeout.ms, 45 s).
                  boolean closed =
                      streams.close(
                          CloseOptions.groupMembershipOperation(
                                  CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                              .withTimeout(CLOSE_TIMEOUT));
                  if (!closed) {
                    System.err.println(
                        "kstreams: did not close within " + CLOSE_TIMEOUT.toSeconds() + " s");
                    exitCode = 1;
                  }
                  System.err.flush();
                  System.out.flush();
                  Runtime.getRuntime().halt(exitCode);
                },
                "kstreams-shutdown"));

    streams.start();

    // Only an error wakes the main thread; a signal ends the process from the hook.
    try {
      failed.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    exitCode = 1;
    System.err.println("kstreams: stream instance entered ERROR state; exiting 1");
    System.exit(1);
  }

  /** The word-count topology; the same as weir's kafka_wordcount pipeline. */
  static Topology topology(String inputTopic, String outputTopic) {
    StreamsBuilder builder = new StreamsBuilder();
    builder
        // Keys are ignored: read them as raw bytes (never decoded).
        .stream(inputTopic, Consumed.with(Serdes.ByteArray(), Serdes.String()))
        .flatMapValues(WordCount::splitAsciiWhitespace)
        // Re-key by word: the repartition topic <application-id>-words-repartition.
        .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
        // Persistent RocksDB store "counts", changelog <application-id>-counts-changelog.
        .count(
            Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as(STORE)
                .withKeySerde(Serdes.String())
                .withValueSerde(Serdes.Long()))
        .toStream()
        .mapValues(count -> Long.toString(count))
        .to(outputTopic, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  /**
   * Splits on ASCII whitespace exactly like Rust's {@code str::split_ascii_whitespace}: the
   * separators are ' ', '\t', '\n', '\u000C' (form feed) and '\r'; empty tokens are dropped.
   * (Not '\u000B', nor any non-ASCII space.)
   */
  static List<String> splitAsciiWhitespace(String line) {
    if (line == null || line.isEmpty()) {
      return Collections.emptyList();
    }
    List<String> words = new ArrayList<>();
    int n = line.length();
    int start = -1;
    for (int i = 0; i < n; i++) {
      if (isAsciiWhitespace(line.charAt(i))) {
        if (start >= 0) {
          words.add(line.substring(start, i));
          start = -1;
        }
      } else if (start < 0) {
        start = i;
      }
    }
    if (start >= 0) {
      words.add(line.substring(start));
    }
    return words;
  }

  static boolean isAsciiWhitespace(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\u000C' || c == '\r';
  }

  /** Parses {@code --name value} pairs; any problem exits 2 with a message naming it. */
  static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> args = new LinkedHashMap<>();
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (a.equals("--help") || a.equals("-h")) {
        System.out.println(USAGE);
        System.exit(0);
      }
      if (!a.startsWith("--") || a.length() == 2) {
        usageError("unexpected argument '" + a + "' (expected --name value)");
      }
      String name = a.substring(2);
      if (!REQUIRED.contains(name) && !OPTIONAL.contains(name)) {
        usageError("unknown argument --" + name);
      }
      if (i + 1 >= argv.length) {
        usageError("--" + name + " needs a value");
      }
      if (args.put(name, argv[++i]) != null) {
        usageError("--" + name + " given twice");
      }
    }
    for (String name : REQUIRED) {
      if (!args.containsKey(name)) {
        usageError("missing required argument --" + name);
      }
    }
    return args;
  }

  private static void usageError(String message) {
    System.err.println("kstreams: " + message);
    System.err.println(USAGE);
    System.exit(2);
  }
}
