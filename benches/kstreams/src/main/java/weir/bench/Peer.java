package weir.bench;

import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;

/**
 * How the exactly-once peers of weir's examples run a topology: one stream thread, exactly-once
 * v2, replication 1, reading from the earliest offset, as a static member of its group.
 *
 * <p>Prints {@code kstreams: RUNNING} once on stdout when the instance first reaches RUNNING.
 * SIGTERM/SIGINT close it and exit 0; an uncaught stream exception exits 1.
 */
final class Peer {
  private static volatile int exitCode = 0;

  private Peer() {}

  /** Runs {@code topology} until the process is stopped; never returns. */
  static void run(
      Topology topology, String applicationId, String brokers, String stateDir, long commitMs) {
    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, commitMs);
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);
    props.put(
        StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    props.put(
        StreamsConfig.mainConsumerPrefix(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG),
        applicationId + "-0");

    KafkaStreams streams = new KafkaStreams(topology, props);
    CountDownLatch failed = new CountDownLatch(1);
    streams.setStateListener(
        (newState, oldState) -> {
          if (newState == KafkaStreams.State.RUNNING && oldState == KafkaStreams.State.REBALANCING) {
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
          exitCode = 1;
          return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(
                      CloseOptions.groupMembershipOperation(
                              CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
                          .withTimeout(Duration.ofSeconds(30)));
                  System.err.flush();
                  System.out.flush();
                  Runtime.getRuntime().halt(exitCode);
                },
                "kstreams-shutdown"));
    streams.start();
    try {
      failed.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    exitCode = 1;
    System.err.println("kstreams: stream instance entered ERROR state; exiting 1");
    System.exit(1);
  }
}
