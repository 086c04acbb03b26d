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
import org.apache.avro.Schema;

/**
 * A client of the documented Confluent Schema Registry REST API, and nothing else: it works against Confluent's
 * registry and Apicurio's {@code /apis/ccompat/v7} alike. Ids and schemas are immutable, so both are cached forever.
 */
public final class SchemaRegistryClient {

  private static final String CONTENT_TYPE = "application/vnd.schemaregistry.v1+json";
  private static final ObjectMapper JSON = new ObjectMapper();

  private final String baseUrl;
  private final HttpClient http;
  private final Map<Integer, Schema> byId = new ConcurrentHashMap<>();
  private final Map<String, Integer> idBySubjectAndSchema = new ConcurrentHashMap<>();

  public SchemaRegistryClient(String baseUrl) {
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
      throw new SchemaRegistryException("registry gave no id for subject " + subject + ": " + reply);
    }
    idBySubjectAndSchema.put(key, id);
    byId.putIfAbsent(id, schema);
    return id;
  }

  /**
   * A 409 on registration. Two clients registered the first version at once (Apicurio answers the loser "... already
   * exists"): if the schema is there, its id is the answer; the winner's version can take a moment to become
   * visible, so then the lookup and the registration are tried again (after 50, 100, 200, 400 ms). Any other 409
   * (an incompatible schema) is refused once the lookup fails.
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
      java.util.concurrent.locks.LockSupport.parkNanos(50_000_000L << attempt);
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
    return byId.computeIfAbsent(id, i -> {
      JsonNode reply = call("GET", "/schemas/ids/" + i, null);
      String text = reply.path("schema").asText(null);
      if (text == null) {
        throw new SchemaRegistryException("registry returned no schema for id " + i + ": " + reply);
      }
      return new Schema.Parser().parse(text);
    });
  }

  /** The latest schema registered under {@code subject}, with its id and version. */
  public Registered latest(String subject) {
    JsonNode reply = call("GET", "/subjects/" + enc(subject) + "/versions/latest", null);
    return new Registered(reply.path("id").asInt(), reply.path("version").asInt(),
        new Schema.Parser().parse(reply.path("schema").asText()));
  }

  /** Sets the compatibility level of one subject (BACKWARD, FORWARD, FULL, NONE, ...). */
  public void setCompatibility(String subject, String level) {
    call("PUT", "/config/" + enc(subject), "{\"compatibility\":\"" + level + "\"}");
  }

  /** Asks the registry whether {@code schema} may be registered as the next version of {@code subject}. */
  public boolean isCompatible(String subject, Schema schema) {
    JsonNode reply = call("POST", "/compatibility/subjects/" + enc(subject) + "/versions/latest", body(schema));
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
   * One REST call, tried again (after 100, 400, 1600 ms) when the registry is unreachable or answers 5xx: registries
   * have transient trouble too (Apicurio's H2 storage times out on a table lock under concurrent registrations).
   */
  private JsonNode call(String method, String path, String body) {
    for (int attempt = 1; ; attempt++) {
      try {
        return callOnce(method, path, body);
      } catch (SchemaRegistryException e) {
        boolean transientError = e.httpStatus() >= 500 || e.httpStatus() == 0;
        if (!transientError || attempt >= ATTEMPTS) {
          throw e;
        }
        java.util.concurrent.locks.LockSupport.parkNanos(100_000_000L << (2 * (attempt - 1)));
        if (Thread.currentThread().isInterrupted()) {
          throw e;
        }
      }
    }
  }

  private JsonNode callOnce(String method, String path, String body) {
    HttpRequest.Builder req = HttpRequest.newBuilder(URI.create(baseUrl + path))
        .timeout(Duration.ofSeconds(10))
        .header("Accept", CONTENT_TYPE + ", application/json");
    if (body != null) {
      req.header("Content-Type", CONTENT_TYPE).method(method, HttpRequest.BodyPublishers.ofString(body));
    } else {
      req.method(method, HttpRequest.BodyPublishers.noBody());
    }
    HttpResponse<String> resp;
    try {
      resp = http.send(req.build(), HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new SchemaRegistryException("schema registry at " + baseUrl + " is unreachable: " + e.getMessage(), e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new SchemaRegistryException("interrupted while calling the schema registry", e);
    }
    JsonNode json;
    try {
      json = resp.body().isBlank() ? JSON.createObjectNode() : JSON.readTree(resp.body());
    } catch (IOException e) {
      throw new SchemaRegistryException(method + " " + path + " -> HTTP " + resp.statusCode() + ", not JSON: " + resp.body());
    }
    if (resp.statusCode() / 100 != 2) {
      throw new SchemaRegistryException(method + " " + path + " -> HTTP " + resp.statusCode()
          + " error_code=" + json.path("error_code").asText("?") + ": " + json.path("message").asText(resp.body()),
          resp.statusCode(), json.path("error_code").asInt(0));
    }
    return json;
  }
}
