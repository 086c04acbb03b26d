package io.distillery.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * What the feedback service sees: per deployment its misfire windows (distinct misfires, requests,
 * rate), the thresholds, cool-down and daily-cap state, and the re-distillation runs it started.
 * Asks the service's HTTP view, whose URL {@code distillery up} writes to {@code
 * <dir>/feedback.json} (or {@code --feedback-url}).
 */
@Command(
    name = "misfires",
    mixinStandardHelpOptions = true,
    description =
        "Show misfire windows, rates, thresholds and past re-distillation triggers (--json for machines).")
final class MisfiresCommand implements Callable<Integer> {

  static final String URL_FILE = "feedback.json";
  private static final ObjectMapper JSON = new ObjectMapper();

  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Mixin ClusterOptions cluster;

  @Parameters(index = "0", arity = "0..1", description = "Deployment id (default: all deployments)")
  String deploymentId;

  @Option(
      names = "--feedback-url",
      description =
          "Base URL of the feedback service (default: from <dir>/"
              + URL_FILE
              + ", else DISTILLERY_FEEDBACK_URL)")
  String feedbackUrl;

  @Option(names = "--json", description = "Print JSON")
  boolean json;

  @Override
  public Integer call() throws Exception {
    String base = baseUrl();
    String path =
        deploymentId == null
            ? "/misfires"
            : "/misfires/"
                + URLEncoder.encode(deploymentId, StandardCharsets.UTF_8).replace("+", "%20");
    HttpResponse<String> res;
    try (HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()) {
      res =
          http.send(
              HttpRequest.newBuilder(URI.create(base + path))
                  .timeout(Duration.ofSeconds(15))
                  .GET()
                  .build(),
              HttpResponse.BodyHandlers.ofString());
    } catch (IOException e) {
      throw new IllegalStateException(
          "cannot reach the feedback service at "
              + base
              + ": "
              + e.getMessage()
              + " (is './distillery up' running?)");
    }
    if (res.statusCode() != 200) {
      String msg = res.body();
      try {
        msg = JSON.readTree(res.body()).path("error").asText(res.body());
      } catch (IOException ignored) {
        // not JSON: print the body as it is
      }
      spec.commandLine().getErr().println(msg);
      return 1;
    }
    JsonNode body = JSON.readTree(res.body());
    PrintWriter out = spec.commandLine().getOut();
    if (json) {
      out.println(JSON.writerWithDefaultPrettyPrinter().writeValueAsString(body));
      return 0;
    }
    out.print(render(body));
    out.flush();
    return 0;
  }

  private String baseUrl() {
    String url = feedbackUrl;
    if (url == null) {
      Path f = cluster.dir.resolve(URL_FILE);
      if (Files.exists(f)) {
        try {
          url = JSON.readTree(f.toFile()).path("url").asText(null);
        } catch (IOException e) {
          throw new IllegalArgumentException("cannot read " + f + ": " + e.getMessage());
        }
      }
    }
    if (url == null) {
      url = System.getenv("DISTILLERY_FEEDBACK_URL");
    }
    if (url == null || url.isBlank()) {
      throw new IllegalArgumentException(
          "no feedback service: start one with './distillery up' (it writes "
              + cluster.dir.resolve(URL_FILE)
              + "), or pass --feedback-url");
    }
    return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
  }

  /** Text for people: the thresholds, then one block per deployment. */
  static String render(JsonNode body) {
    StringBuilder sb = new StringBuilder();
    JsonNode t = body.path("thresholds");
    sb.append(
        String.format(
            Locale.ROOT,
            "thresholds: rate >= %.2f%% and >= %d distinct misfires per %s window (every %s, grace %s);"
                + " cool-down %s; at most %d runs/day%n",
            100 * t.path("minRate").asDouble(),
            t.path("minMisfires").asLong(),
            human(t.path("window").asText()),
            human(t.path("advance").asText()),
            human(t.path("grace").asText()),
            human(t.path("coolDown").asText()),
            t.path("maxRunsPerDay").asInt()));
    if (body.has("deployments")) {
      if (body.path("deployments").isEmpty()) {
        sb.append("no deployments seen yet").append(System.lineSeparator());
      }
      body.path("deployments").forEach(d -> deployment(sb, d));
    } else {
      deployment(sb, body);
    }
    return sb.toString();
  }

  private static void deployment(StringBuilder sb, JsonNode d) {
    String nl = System.lineSeparator();
    sb.append(nl).append("deployment ").append(d.path("deploymentId").asText());
    if (!d.path("known").asBoolean()) {
      sb.append(" (unknown: no full DeploymentRequested seen)");
    }
    sb.append(nl);
    if (d.hasNonNull("parentRun")) {
      sb.append("  parent run ")
          .append(d.path("parentRun").asText())
          .append("  teacher ")
          .append(d.path("teacher").asText("-"))
          .append(nl);
    }
    sb.append(
        String.format(
            Locale.ROOT,
            "  %-24s %-24s %8s %6s %8s %8s  %s%n",
            "WINDOW START",
            "END",
            "MISFIRES",
            "DUPS",
            "REQUESTS",
            "RATE",
            "STATE"));
    for (JsonNode w : d.path("windows")) {
      sb.append(
          String.format(
              Locale.ROOT,
              "  %-24s %-24s %8d %6d %8d %7.2f%%  %s%s%n",
              w.path("start").asText(),
              w.path("end").asText(),
              w.path("misfires").asLong(),
              w.path("duplicates").asLong(),
              w.path("requests").asLong(),
              100 * w.path("rate").asDouble(),
              w.path("judged").asBoolean() ? "judged" : "open",
              w.path("overThreshold").asBoolean() ? ", OVER" : ""));
    }
    if (d.path("windows").isEmpty()) {
      sb.append("  (no windows)").append(nl);
    }
    sb.append("  cool-down: ")
        .append(
            d.path("coolingDown").asBoolean()
                ? "active until " + d.path("coolDownUntil").asText()
                : d.hasNonNull("coolDownUntil")
                    ? "ended " + d.path("coolDownUntil").asText()
                    : "none")
        .append(
            String.format(
                Locale.ROOT,
                "; runs today %d/%d; suppressed: %d by cool-down, %d by daily cap%n",
                d.path("runsToday").asInt(),
                d.path("maxRunsPerDay").asInt(),
                d.path("suppressedByCoolDown").asLong(),
                d.path("suppressedByDailyCap").asLong()));
    JsonNode triggers = d.path("triggers");
    if (triggers.isEmpty()) {
      sb.append("  no triggers").append(nl);
      return;
    }
    sb.append(
        String.format(
            Locale.ROOT,
            "  %-36s %-7s %-24s %8s %8s  %s%n",
            "TRIGGERED RUN",
            "OUTCOME",
            "WINDOW START",
            "MISFIRES",
            "RATE",
            "DATASET / REASON"));
    for (JsonNode x : triggers) {
      sb.append(
          String.format(
              Locale.ROOT,
              "  %-36s %-7s %-24s %8d %7.2f%%  %s%n",
              x.path("runId").asText(),
              x.path("outcome").asText(),
              x.path("windowStart").asText(),
              x.path("misfires").asLong(),
              100 * x.path("rate").asDouble(),
              x.hasNonNull("dataset") ? x.path("dataset").asText() : x.path("reason").asText("")));
    }
  }

  /** PT10M -> 10m */
  private static String human(String iso) {
    return iso.startsWith("PT") ? iso.substring(2).toLowerCase(Locale.ROOT) : iso;
  }
}
