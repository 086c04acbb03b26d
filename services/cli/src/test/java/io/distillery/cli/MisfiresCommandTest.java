package io.distillery.cli;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code distillery misfires} against a stand-in for the feedback service's HTTP view. */
class MisfiresCommandTest {

  static final String ONE =
      """
      {"deploymentId":"d1","known":true,"parentRun":"r0","teacher":"file:///t",
       "windows":[{"start":"2026-11-23T10:00:00Z","end":"2026-11-23T10:10:00Z","misfires":60,"duplicates":4,
         "requests":1000,"rate":0.06,"judged":true,"overThreshold":true}],
       "coolingDown":true,"coolDownUntil":"2026-11-23T11:10:00Z","runsToday":1,"maxRunsPerDay":4,
       "suppressedByCoolDown":2,"suppressedByDailyCap":0,
       "triggers":[{"runId":"6f1c0f4e-0000-3000-8000-000000000001","outcome":"FIRED",
         "windowStart":"2026-11-23T10:00:00Z","misfires":60,"rate":0.06,"dataset":"file:///store/ab/x/"}],
       "thresholds":{"minRate":0.05,"minMisfires":50,"window":"PT10M","advance":"PT1M","grace":"PT10S",
         "coolDown":"PT1H","maxRunsPerDay":4}}
      """;

  @TempDir Path dir;
  HttpServer server;
  String url;

  @BeforeEach
  void serve() throws Exception {
    server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/misfires",
        ex -> {
          boolean known = ex.getRequestURI().getPath().equals("/misfires/d1");
          byte[] body =
              (known ? ONE : "{\"error\":\"no deployment 'x' is known to the feedback service\"}")
                  .getBytes(StandardCharsets.UTF_8);
          ex.sendResponseHeaders(known ? 200 : 404, body.length);
          ex.getResponseBody().write(body);
          ex.close();
        });
    server.start();
    url = "http://127.0.0.1:" + server.getAddress().getPort();
  }

  @AfterEach
  void stop() {
    server.stop(0);
  }

  record Result(int code, String out, String err) {}

  Result run(String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    int code = Main.execute(new PrintWriter(out, true), new PrintWriter(err, true), args);
    return new Result(code, out.toString(), err.toString());
  }

  @Test
  void shouldPrintWindowsThresholdsAndTriggersOfADeployment() {
    Result r = run("misfires", "d1", "--feedback-url", url);
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(r.out())
        .contains("rate >= 5.00% and >= 50 distinct misfires per 10m window (every 1m")
        .contains("cool-down 1h")
        .contains("deployment d1")
        .containsPattern(
            "2026-11-23T10:00:00Z\\s+2026-11-23T10:10:00Z\\s+60\\s+4\\s+1000\\s+6.00%  judged, OVER")
        .contains("active until 2026-11-23T11:10:00Z")
        .contains("runs today 1/4")
        .contains("6f1c0f4e-0000-3000-8000-000000000001 FIRED");
  }

  @Test
  void shouldFindTheServiceThroughTheRunDirectoryAndPrintJson() throws Exception {
    Files.writeString(dir.resolve("feedback.json"), "{\"url\":\"" + url + "/\"}");
    Result r = run("misfires", "d1", "--dir", dir.toString(), "--json");
    assertThat(r.code()).as(r.err()).isZero();
    assertThat(r.out())
        .contains("\"misfires\" : 60")
        .contains("\"runId\" : \"6f1c0f4e-0000-3000-8000-000000000001\"");
  }

  @Test
  void shouldFailWithTheServicesReasonForAnUnknownDeployment() {
    Result r = run("misfires", "x", "--feedback-url", url);
    assertThat(r.code()).isEqualTo(1);
    assertThat(r.err()).contains("no deployment 'x' is known");
  }

  @Test
  void shouldSayHowToStartTheServiceWhenNoUrlIsKnown() {
    Result r = run("misfires", "--dir", dir.toString());
    assertThat(r.code()).isEqualTo(2);
    assertThat(r.err()).contains("--feedback-url");
  }
}
