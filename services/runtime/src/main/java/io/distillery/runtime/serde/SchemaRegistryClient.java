package io.distillery.runtime.serde;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.LockSupport;
import org.apache.avro.Schema;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A client of the documented Confluent Schema Registry REST API, and nothing else: it works against
 * Confluent's registry and Apicurio's {@code /apis/ccompat/v7} alike. Ids and schemas are
 * immutable, so both are cached forever.
 *
 * <p>A registry that is down or answers 5xx is waited for: each call backs off (doubling from
 * {@link #FIRST_BACKOFF} up to {@link #MAX_BACKOFF}) until it answers or the retry budget is spent.
 * The default budget, {@link #DEFAULT_RETRY_BUDGET}, rides out a hiccup and suits callers with a
 * deadline (the CLI, the serving node's event sink). Threads that may wait, a Kafka Streams thread
 * or a worker's job loop, take {@link #OUTAGE_RETRY_BUDGET}: a registry restart then stalls the
 * producers and consumers that need a schema they have not cached yet, and they resume when it is
 * back, instead of losing the stream thread or dead-lettering a good record. That budget stays
 * below Kafka's {@code max.poll.interval.ms} (5 minutes), so a consumer thread that waits here
 * keeps its partitions.
 */
public final class SchemaRegistryClient {

  private static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";
  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * How long a call waits out an unreachable registry before it reports the failure, by default.
   */
  public static final Duration DEFAULT_RETRY_BUDGET = Duration.ofSeconds(2);

  /**
   * The budget of threads that should wait out a registry restart rather than fail (stream threads,
   * job loops).
   */
  public static final Duration OUTAGE_RETRY_BUDGET = Duration.ofMinutes(2);

  static final Duration FIRST_BACKOFF = Duration.ofMillis(100);
  static final Duration MAX_BACKOFF = Duration.ofSeconds(5);
  private static final Logger LOG = LoggerFactory.getLogger(SchemaRegistryClient.class);

  private final String baseUrl;
  private final HttpClient http;
  private final Duration retryBudget;
  private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();
  private final Map<String, Integer> idBySubjectAndSchema = new ConcurrentHashMap<>();

  public SchemaRegistryClient(String baseUrl) {
    this(baseUrl, DEFAULT_RETRY_BUDGET);
  }

  /**
   * A client that waits at most {@code retryBudget} per call for a registry that is down or answers
   * 5xx.
   */
  public SchemaRegistryClient(String baseUrl, Duration retryBudget) {
    if (retryBudget.isNegative()) {
      throw new IllegalArgumentException("retry budget must not be negative, was " + retryBudget);
    }
    this.retryBudget = retryBudget;
    if (baseUrl == null || baseUrl.isBlank()) {
      throw new IllegalArgumentException("schema registry URL is empty");
    }
    URI uri = URI.create(baseUrl);
    if (!"http".equals(uri.getScheme()) && !"https".equals(uri.getScheme())) {
      throw new IllegalArgumentException("schema registry URL must be http(s): " + baseUrl);
    }
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
    this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  }

  public String baseUrl() {
    return baseUrl;
  }

  /** Registers (or finds) {@code schema} under {@code subject}; returns its global id. */
  public int register(String subject, Schema schema) {
    String key = subject + '\u0000' + schema.toString();
    Integer cached = idBySubjectAndSchema.get(key);
    if (cached != null) {
      return cached;
    }
    JsonNode reply;
    try {
      reply = call("POST", "/subjects/" + enc(subject) + "/versions", body(schema));
    } catch (SchemaRegistryException e) {
      if (e.httpStatus() != 409) {
        throw e;
      }
      reply = afterConflict(subject, schema, e);
    }
    int id = reply.path("id").asInt(-1);
    if (id < 0) {
      throw new SchemaRegistryException(
          "registry gave no id for subject " + subject + ": " + reply);
    }
    idBySubjectAndSchema.put(key, id);
    byId.putIfAbsent(id, schema);
    return id;
  }

  /**
   * A 409 on registration. Two clients registered the first version at once (Apicurio answers the
   * loser "... already exists"): if the schema is there, its id is the answer; the winner's version
   * can take a moment to become visible, so then the lookup and the registration are tried again
   * (after 50, 100, 200, 400 ms). Any other 409 (an incompatible schema) is refused once the lookup
   * fails.
   */
  private JsonNode afterConflict(String subject, Schema schema, SchemaRegistryException conflict) {
    boolean race = String.valueOf(conflict.getMessage()).contains("already exists");
    for (int attempt = 0; ; attempt++) {
      try {
        return call("POST", "/subjects/" + enc(subject), body(schema));
      } catch (SchemaRegistryException notThere) {
        if (!race || attempt >= ATTEMPTS) {
          throw conflict;
        }
      }
      LockSupport.parkNanos(50_000_000L << attempt);
      if (Thread.currentThread().isInterrupted()) {
        throw conflict;
      }
      try {
        return call("POST", "/subjects/" + enc(subject) + "/versions", body(schema));
      } catch (SchemaRegistryException again) {
        if (again.httpStatus() != 409) {
          throw again;
        }
      }
    }
  }

  /** The writer schema with this global id. */
  public Schema schemaById(int id) {
    return byId.computeIfAbsent(
        id,
        i -> {
          JsonNode reply = call("GET", "/schemas/ids/" + i, null);
          String text = reply.path("schema").asText(null);
          if (text == null) {
            throw new SchemaRegistryException(
                "registry returned no schema for id " + i + ": " + reply);
          }
          return new Schema.Parser().parse(text);
        });
  }

  /** The latest schema registered under {@code subject}, with its id and version. */
  public Registered latest(String subject) {
    JsonNode reply = call("GET", "/subjects/" + enc(subject) + "/versions/latest", null);
    return new Registered(
        reply.path("id").asInt(),
        reply.path("version").asInt(),
        new Schema.Parser().parse(reply.path("schema").asText()));
  }

  /** Sets the compatibility level of one subject (BACKWARD, FORWARD, FULL, NONE, ...). */
  public void setCompatibility(String subject, String level) {
    call("PUT", "/config/" + enc(subject), "{\"compatibility\":\"" + level + "\"}");
  }

  /**
   * Asks the registry whether {@code schema} may be registered as the next version of {@code
   * subject}.
   */
  public boolean isCompatible(String subject, Schema schema) {
    JsonNode reply =
        call("POST", "/compatibility/subjects/" + enc(subject) + "/versions/latest", body(schema));
    return reply.path("is_compatible").asBoolean(false);
  }

  /** A schema as registered. */
  public record Registered(int id, int version, Schema schema) {}

  private static String body(Schema schema) {
    try {
      return JSON.writeValueAsString(Map.of("schema", schema.toString()));
    } catch (IOException e) {
      throw new SchemaRegistryException("cannot encode schema " + schema.getFullName(), e);
    }
  }

  private static String enc(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }

  private static final int ATTEMPTS = 4;

  /**
   * One REST call, tried again while the registry is unreachable or answers 5xx, backing off from
   * 100 ms, doubling, up to 5 s between tries, until the retry budget is spent: registries have
   * transient trouble (Apicurio's H2 storage times out on a table lock under concurrent
   * registrations) and restarts. The last failure is thrown.
   */
  private JsonNode call(String method, String path, String body) {
    long deadline = System.nanoTime() + retryBudget.toNanos();
    long backoff = FIRST_BACKOFF.toNanos();
    for (int attempt = 1; ; attempt++) {
      try {
        JsonNode reply = callOnce(method, path, body);
        if (attempt > 1) {
          LOG.info(
              "schema registry at {} answered {} {} after {} tries",
              baseUrl,
              method,
              path,
              attempt);
        }
        return reply;
      } catch (SchemaRegistryException e) {
        if (!e.isTransient()
            || System.nanoTime() + backoff > deadline
            || Thread.currentThread().isInterrupted()) {
          throw e;
        }
        if (attempt == 1 || backoff == MAX_BACKOFF.toNanos()) {
          LOG.warn(
              "schema registry at {}: {} {} failed, retrying for up to {}: {}",
              baseUrl,
              method,
              path,
              retryBudget,
              e.getMessage());
        }
        LockSupport.parkNanos(backoff);
        if (Thread.currentThread().isInterrupted()) {
          throw e;
        }
        backoff = Math.min(backoff * 2, MAX_BACKOFF.toNanos());
      }
    }
  }

  private JsonNode callOnce(String method, String path, String body) {
    HttpRequest.Builder req =
        HttpRequest.newBuilder(URI.create(baseUrl + path))
            .timeout(Duration.ofSeconds(10))
            .header("Accept", CONTENT_TYPE + ", application/json");
    if (body != null) {
      req.header("Content-Type", CONTENT_TYPE)
          .method(method, HttpRequest.BodyPublishers.ofString(body));
    } else {
      req.method(method, HttpRequest.BodyPublishers.noBody());
    }
    HttpResponse<String> resp;
    try {
      resp = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new SchemaRegistryException(
          "schema registry at " + baseUrl + " is unreachable: " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SchemaRegistryException("interrupted while calling the schema registry", e);
    }
    JsonNode json;
    try {
      json = resp.body().isBlank() ? JSON.createObjectNode() : JSON.readTree(resp.body());
    } catch (IOException e) {
      throw new SchemaRegistryException(
          method + " " + path + " -> HTTP " + resp.statusCode() + ", not JSON: " + resp.body(),
          resp.statusCode(),
          0);
    }
    if (resp.statusCode() / 100 != 2) {
      throw new SchemaRegistryException(
          method
              + " "
              + path
              + " -> HTTP "
              + resp.statusCode()
              + " error_code="
              + json.path("error_code").asText("?")
              + ": "
              + json.path("message").asText(resp.body()),
          resp.statusCode(),
          json.path("error_code").asInt(0));
    }
    return json;
  }
}
