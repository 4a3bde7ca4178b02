package weir.bench;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * Kafka Streams page views per page and tumbling window, the benchmark peer of weir's {@code
 * page_views} (workload 8).
 *
 * <p>Reads JSON views {@code {"page", "user", "ts"}} from {@code --input-topic} (keys ignored,
 * event time = {@code ts}), re-keys them by page through a repartition topic, aggregates each
 * page's views and set of users per tumbling window ({@code windowedBy(TimeWindows)} with a grace
 * period) in a persistent window store, and writes each window once it closes ({@code
 * suppress(untilWindowCloses)}) to {@code --output-topic}: key = the page, value = JSON {@code
 * {"page", "window_start", "window_end", "views", "users"}}, users being the distinct users. The
 * record cache keeps its default (10 MB): with suppress, only closed windows are written either
 * way.
 *
 * <p>Prints {@code kstreams: RUNNING} once on stdout when the instance first reaches RUNNING.
 * SIGTERM/SIGINT close it and exit 0; an uncaught stream exception exits 1; bad arguments exit 2.
 */
public final class PageViews {
  private static final String USAGE =
      "usage: run-page-views --brokers HOST:PORT --input-topic T --output-topic T"
          + " --application-id ID --state-dir DIR [--commit-interval-ms N (1000)]"
          + " [--window-ms N (60000)] [--grace-ms N (5000)]";

  private static final List<String> REQUIRED =
      List.of("brokers", "input-topic", "output-topic", "application-id", "state-dir");
  private static final List<String> OPTIONAL =
      List.of("commit-interval-ms", "window-ms", "grace-ms");

  private static final ObjectMapper JSON = new ObjectMapper();


  private PageViews() {}

  /** One view, as the input carries it. */
  public record View(String page, String user, long ts) {}

  /** A window's views and the set of its users. */
  static final class Agg {
    long views;
    final Set<String> users = new HashSet<>();

    Agg add(String user) {
      views++;
      users.add(user);
      return this;
    }
  }

  public static void main(String[] argv) {
    Map<String, String> args = parseArgs(argv);
    long commitIntervalMs = number(args, "commit-interval-ms", 1000);
    long windowMs = number(args, "window-ms", 60_000);
    long graceMs = number(args, "grace-ms", 5_000);

    Topology topology =
        topology(args.get("input-topic"), args.get("output-topic"), windowMs, graceMs);
    Peer.run(
        topology,
        args.get("application-id"),
        args.get("brokers"),
        args.get("state-dir"),
        commitIntervalMs);
  }

  /** The page-view topology; the same as weir's page_views pipeline. */
  static Topology topology(String input, String output, long windowMs, long graceMs) {
    Serde<View> views = Serdes.serdeFrom(jsonSerializer(), viewDeserializer());
    Serde<Agg> aggs = Serdes.serdeFrom(PageViews::writeAgg, PageViews::readAgg);
    StreamsBuilder builder = new StreamsBuilder();
    builder
        .stream(
            input,
            Consumed.with(Serdes.ByteArray(), views)
                .withTimestampExtractor((record, partitionTime) -> ((View) record.value()).ts()))
        .groupBy((key, view) -> view.page(), Grouped.with("pages", Serdes.String(), views))
        .windowedBy(
            TimeWindows.ofSizeAndGrace(Duration.ofMillis(windowMs), Duration.ofMillis(graceMs)))
        .aggregate(
            Agg::new,
            (page, view, agg) -> agg.add(view.user()),
            Materialized.<String, Agg, WindowStore<Bytes, byte[]>>as("views")
                .withKeySerde(Serdes.String())
                .withValueSerde(aggs))
        .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
        .toStream()
        .map(
            (window, agg) ->
                KeyValue.pair(
                    window.key(),
                    stats(
                        window.key(),
                        window.window().start(),
                        window.window().end(),
                        agg.views,
                        agg.users.size())))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  static String stats(String page, long start, long end, long views, long users) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("page", page);
    m.put("window_start", start);
    m.put("window_end", end);
    m.put("views", views);
    m.put("users", users);
    try {
      return JSON.writeValueAsString(m);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static <T> Serializer<T> jsonSerializer() {
    return (topic, value) -> {
      try {
        return JSON.writeValueAsBytes(value);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    };
  }

  static Deserializer<View> viewDeserializer() {
    return (topic, bytes) -> {
      try {
        return JSON.readValue(bytes, View.class);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    };
  }

  static byte[] writeAgg(String topic, Agg agg) {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(16 + agg.users.size() * 8);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeLong(agg.views);
      out.writeInt(agg.users.size());
      for (String u : agg.users) {
        out.writeUTF(u);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  static Agg readAgg(String topic, byte[] bytes) {
    if (bytes == null) {
      return null;
    }
    Agg agg = new Agg();
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes))) {
      agg.views = in.readLong();
      int n = in.readInt();
      for (int i = 0; i < n; i++) {
        agg.users.add(in.readUTF());
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return agg;
  }

  static long number(Map<String, String> args, String name, long fallback) {
    return number(args, name, fallback, USAGE);
  }

  /** The number {@code --name} gives, or {@code fallback}; refused with {@code usage}. */
  static long number(Map<String, String> args, String name, long fallback, String usage) {
    String text = args.get(name);
    if (text == null) {
      return fallback;
    }
    try {
      long n = Long.parseLong(text);
      if (n >= 0) {
        return n;
      }
    } catch (NumberFormatException e) {
      // Reported below.
    }
    usageError(usage, "--" + name + ": expected a non-negative integer, got '" + text + "'");
    return fallback;
  }

  static Map<String, String> parseArgs(String[] argv) {
    return parseArgsOf(argv, REQUIRED, OPTIONAL, USAGE);
  }

  /** {@code --name value} pairs of {@code argv}, with the names each peer takes. */
  static Map<String, String> parseArgsOf(
      String[] argv, List<String> required, List<String> optional, String usage) {
    Map<String, String> args = new LinkedHashMap<>();
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (!a.startsWith("--") || a.length() == 2) {
        usageError(usage, "unexpected argument '" + a + "' (expected --name value)");
      }
      String name = a.substring(2);
      if (!required.contains(name) && !optional.contains(name)) {
        usageError(usage, "unknown argument --" + name);
      }
      if (i + 1 >= argv.length) {
        usageError(usage, "--" + name + " needs a value");
      }
      args.put(name, argv[++i]);
    }
    for (String name : required) {
      if (!args.containsKey(name)) {
        usageError(usage, "missing required argument --" + name);
      }
    }
    return args;
  }

  private static void usageError(String usage, String message) {
    System.err.println("kstreams: " + message);
    System.err.println(usage);
    System.exit(2);
  }
}
