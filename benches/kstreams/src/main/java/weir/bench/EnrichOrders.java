package weir.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;

/**
 * Kafka Streams orders enriched with their customer, the benchmark peer of weir's {@code
 * enrich_orders} (workload 9).
 *
 * <p>Reads the customers of {@code --customers-topic} as a table (key = id, JSON value {@code
 * {"name", "country"}}, null deletes) into a persistent store, and the JSON orders {@code
 * {"order_id", "customer_id", "amount", "ts"}} of {@code --orders-topic} (keys ignored, event
 * time = {@code ts}); re-keys the orders by customer through a repartition topic, joins each with
 * the table ({@code KStream#leftJoin(KTable)}), and writes it to {@code --output-topic}: key = the
 * order's id, value = the order plus {@code "customer": {"name", "country"}} or {@code null}.
 *
 * <p>Prints {@code kstreams: RUNNING} once on stdout when the instance first reaches RUNNING.
 * SIGTERM/SIGINT close it and exit 0; an uncaught stream exception exits 1; bad arguments exit 2.
 */
public final class EnrichOrders {
  private static final String USAGE =
      "usage: run-enrich-orders --brokers HOST:PORT --orders-topic T --customers-topic T"
          + " --output-topic T --application-id ID --state-dir DIR [--commit-interval-ms N (1000)]";

  private static final List<String> REQUIRED =
      List.of(
          "brokers", "orders-topic", "customers-topic", "output-topic", "application-id",
          "state-dir");
  private static final List<String> OPTIONAL = List.of("commit-interval-ms");

  private static final ObjectMapper JSON = new ObjectMapper();


  private EnrichOrders() {}

  /** An order, as the input carries it. */
  public record Order(String order_id, String customer_id, double amount, long ts) {}

  /** A customer, as the table carries it. */
  public record Customer(String name, String country) {}

  public static void main(String[] argv) {
    Map<String, String> args = PageViews.parseArgsOf(argv, REQUIRED, OPTIONAL, USAGE);
    long commitIntervalMs = PageViews.number(args, "commit-interval-ms", 1000, USAGE);

    Topology topology =
        topology(args.get("orders-topic"), args.get("customers-topic"), args.get("output-topic"));
    Peer.run(
        topology,
        args.get("application-id"),
        args.get("brokers"),
        args.get("state-dir"),
        commitIntervalMs);
  }

  /** The join topology; the same as weir's enrich_orders pipeline. */
  static Topology topology(String orders, String customers, String output) {
    Serde<Order> orderSerde = Serdes.serdeFrom(PageViews.jsonSerializer(), reader(Order.class));
    Serde<Customer> customerSerde =
        Serdes.serdeFrom(PageViews.jsonSerializer(), reader(Customer.class));
    StreamsBuilder builder = new StreamsBuilder();
    KTable<String, Customer> table =
        builder.table(
            customers,
            Consumed.with(Serdes.String(), customerSerde),
            Materialized.<String, Customer, org.apache.kafka.streams.state.KeyValueStore<
                    org.apache.kafka.common.utils.Bytes, byte[]>>as("customers")
                .withKeySerde(Serdes.String())
                .withValueSerde(customerSerde));
    builder
        .stream(
            orders,
            Consumed.with(Serdes.ByteArray(), orderSerde)
                .withTimestampExtractor((record, partitionTime) -> ((Order) record.value()).ts()))
        .filter((key, order) -> order != null)
        .selectKey((key, order) -> order.customer_id())
        .repartition(Repartitioned.with(Serdes.String(), orderSerde).withName("by-customer"))
        .leftJoin(table, EnrichOrders::enriched)
        .selectKey((customer, enriched) -> enriched.get("order_id").toString())
        .mapValues(EnrichOrders::json)
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  static Map<String, Object> enriched(Order order, Customer customer) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("order_id", order.order_id());
    m.put("customer_id", order.customer_id());
    m.put("amount", order.amount());
    m.put("ts", order.ts());
    m.put("customer", customer);
    return m;
  }

  static String json(Map<String, Object> value) {
    try {
      return JSON.writeValueAsString(value);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  static <T> Deserializer<T> reader(Class<T> type) {
    return (topic, bytes) -> {
      if (bytes == null) {
        return null;
      }
      try {
        return JSON.readValue(bytes, type);
      } catch (IOException e) {
        throw new UncheckedIOException(e);
      }
    };
  }
}
