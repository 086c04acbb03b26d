package io.distillery.evaluator.report;

import io.distillery.evaluator.gate.Assessment;
import io.distillery.evaluator.gate.GateKey;
import io.distillery.evaluator.gate.Gates;
import io.distillery.evaluator.measure.CandidateMetrics;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.stream.Collectors;

/**
 * The report as one HTML page that needs nothing else: inline CSS, a table of every candidate and
 * the reference with each gate's verdict, and an inline SVG scatter of size on disk (x) against
 * retention (y). No script, no external resource, so it opens from an artefact store or a mail
 * attachment alike.
 */
final class ReportPage {

  private static final int WIDTH = 640;
  private static final int HEIGHT = 360;
  private static final int LEFT = 70;
  private static final int RIGHT = 30;
  private static final int TOP = 20;
  private static final int BOTTOM = 50;

  private ReportPage() {}

  static String render(EvaluationReport r) {
    StringBuilder h = new StringBuilder(8192);
    h.append(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evaluation report")
        .append(r.runId() == null ? "" : " " + esc(r.runId()))
        .append("</title>\n<style>")
        .append("body{font-family:system-ui,sans-serif;margin:2em;color:#222}")
        .append(
            "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;")
        .append("text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}")
        .append(
            "tr.pass td.v{color:#17702b}tr.fail td.v{color:#b3261e}tr.chosen{background:#eef7ee}")
        .append(
            "tr.ref{background:#eef3fb}.fail{color:#b3261e}.pass{color:#17702b}</style></head><body>\n");
    h.append("<h1>Evaluation report</h1>\n<p>");
    if (r.runId() != null) {
      h.append("Run <code>").append(esc(r.runId())).append("</code>. ");
    }
    long passing = r.candidates().stream().filter(e -> e.assessment().passed()).count();
    h.append(r.candidates().size())
        .append(" candidates, ")
        .append(passing)
        .append(" passing; pick <b>")
        .append(esc(r.pick()))
        .append("</b>: ")
        .append(
            r.chosen() == null
                ? "<b class=\"fail\">nothing passed the gates</b>"
                : "chose <b class=\"pass\">" + esc(r.chosen()) + "</b>")
        .append(".</p>\n<p>Eval data: ")
        .append(esc(r.dataSource()))
        .append(" (")
        .append(r.reference().examples())
        .append(" prompts")
        .append(r.misfires() > 0 ? ", " + r.misfires() + " held-out misfires" : "")
        .append("). Retention basis: <b>")
        .append(esc(r.retentionBasis()))
        .append("</b>")
        .append(
            r.retentionBasis().equals("exactMatch")
                ? " (candidate exactMatch / reference exactMatch)"
                : " (reference exactMatch is 0, so reference perplexity / candidate perplexity)")
        .append(".</p>\n");
    if (r.note() != null) {
      h.append("<p class=\"note\"><b>")
          .append(esc(r.mode()))
          .append(" evaluation</b>: ")
          .append(esc(r.note()))
          .append(".</p>\n");
    }
    h.append("<h2>Gates</h2>\n<p>");
    if (r.gates().isEmpty()) {
      h.append("No gates: every candidate passes.");
    } else {
      List<String> gates = new ArrayList<>();
      for (GateKey key : GateKey.values()) {
        if (r.gates().containsKey(key)) {
          gates.add(
              "<code>"
                  + key.id()
                  + " "
                  + esc(key.direction().symbol())
                  + " "
                  + Gates.format(r.gates().get(key))
                  + "</code>");
        }
      }
      h.append(String.join(", ", gates));
    }
    h.append("</p>\n<h2>Size vs quality</h2>\n").append(chart(r));
    h.append(
            "<h2>Candidates</h2>\n<table><tr><th class=\"l\">candidate</th><th class=\"l\">format</th>")
        .append(
            "<th>retention</th><th>exact match</th><th>perplexity</th><th>agreement</th><th>KL</th>")
        .append(
            "<th>prefill p50/p99 ms</th><th>decode p50/p99 ms</th><th>decode tok/s</th><th>weight bytes</th>")
        .append("<th>params</th><th>misfire EM</th><th class=\"l\">gates</th></tr>\n");
    h.append(row("ref", r.reference(), "reference", 1.0, "reference (registered model)"));
    for (EvaluationReport.Entry e : r.candidates()) {
      Assessment a = e.assessment();
      String cls =
          (a.passed() ? "pass" : "fail") + (e.metrics().name().equals(r.chosen()) ? " chosen" : "");
      String verdicts =
          a.gates().isEmpty()
              ? "passed (no gates)"
              : a.gates().stream()
                  .map(
                      g ->
                          "<span class=\""
                              + (g.passed() ? "pass" : "fail")
                              + "\">"
                              + (g.passed() ? "&#10003; " : "&#10007; ")
                              + esc(g.reason())
                              + "</span>")
                  .collect(Collectors.joining("<br>"));
      h.append(row(cls, e.metrics(), e.format(), a.value(GateKey.RETENTION.id()), verdicts));
    }
    h.append("</table>\n</body></html>\n");
    return h.toString();
  }

  private static String row(
      String cls, CandidateMetrics m, String format, double retention, String verdicts) {
    return "<tr class=\""
        + cls
        + "\"><td class=\"l\">"
        + esc(m.name())
        + "</td><td class=\"l\">"
        + esc(format)
        + "</td><td class=\"v\">"
        + num(retention)
        + "</td><td>"
        + num(m.exactMatch())
        + "</td><td>"
        + num(m.perplexity())
        + "</td><td>"
        + num(m.agreement())
        + "</td><td>"
        + num(m.klDivergence())
        + "</td><td>"
        + num(m.latency().prefillP50Ms())
        + " / "
        + num(m.latency().prefillP99Ms())
        + "</td><td>"
        + num(m.latency().decodeP50Ms())
        + " / "
        + num(m.latency().decodeP99Ms())
        + "</td><td>"
        + num(m.latency().decodeTokensPerSecond())
        + "</td><td>"
        + m.weightBytes()
        + "</td><td>"
        + m.parameters()
        + "</td><td>"
        + num(m.misfireExactMatch())
        + "</td><td class=\"l\">"
        + verdicts
        + "</td></tr>\n";
  }

  /** Scatter of weight bytes (x, log scale when sizes span more than 10x) against retention (y). */
  static String chart(EvaluationReport r) {
    record Point(String name, double bytes, double retention, String color, boolean chosen) {}
    List<Point> points = new ArrayList<>();
    points.add(new Point("reference", r.reference().weightBytes(), 1.0, "#1f5fbf", false));
    for (EvaluationReport.Entry e : r.candidates()) {
      double retention = e.assessment().value(GateKey.RETENTION.id());
      points.add(
          new Point(
              e.metrics().name(),
              e.metrics().weightBytes(),
              Double.isFinite(retention) ? retention : 0,
              e.assessment().passed() ? "#17702b" : "#b3261e",
              e.metrics().name().equals(r.chosen())));
    }
    double minBytes = points.stream().mapToDouble(Point::bytes).filter(b -> b > 0).min().orElse(1);
    double maxBytes = points.stream().mapToDouble(Point::bytes).max().orElse(1);
    boolean log = maxBytes / minBytes > 10;
    double x0 = log ? Math.log10(minBytes) - 0.1 : 0;
    double x1 = log ? Math.log10(maxBytes) + 0.1 : maxBytes * 1.1;
    double yMax =
        Math.max(1.1, points.stream().mapToDouble(Point::retention).max().orElse(1) * 1.05);
    int plotW = WIDTH - LEFT - RIGHT;
    int plotH = HEIGHT - TOP - BOTTOM;
    StringBuilder s = new StringBuilder();
    s.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"")
        .append(WIDTH)
        .append("\" height=\"")
        .append(HEIGHT)
        .append("\" viewBox=\"0 0 ")
        .append(WIDTH)
        .append(' ')
        .append(HEIGHT)
        .append(
            "\" role=\"img\" aria-label=\"weight bytes against retention\" font-family=\"sans-serif\"")
        .append(" font-size=\"11\">\n");
    s.append("<rect x=\"")
        .append(LEFT)
        .append("\" y=\"")
        .append(TOP)
        .append("\" width=\"")
        .append(plotW)
        .append("\" height=\"")
        .append(plotH)
        .append("\" fill=\"#fafafa\" stroke=\"#999\"/>\n");
    for (int i = 0; i <= 4; i++) {
      double v = yMax * i / 4;
      double y = TOP + plotH - plotH * v / yMax;
      s.append(
          String.format(
              Locale.ROOT,
              "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e2e2e2\"/>"
                  + "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
              LEFT,
              y,
              LEFT + plotW,
              y,
              LEFT - 6,
              y + 4,
              num(v)));
    }
    for (int i = 0; i <= 4; i++) {
      double xv = x0 + (x1 - x0) * i / 4;
      double bytes = log ? Math.pow(10, xv) : xv;
      double x = LEFT + plotW * (double) i / 4;
      s.append(
          String.format(
              Locale.ROOT,
              "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
              x,
              TOP + plotH + 16,
              bytes(bytes)));
    }
    s.append(
        String.format(
            Locale.ROOT,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">weight bytes on disk%s</text>\n",
            LEFT + plotW / 2,
            HEIGHT - 8,
            log ? " (log scale)" : ""));
    s.append(
        String.format(
            Locale.ROOT,
            "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" "
                + "text-anchor=\"middle\">retention (%s)</text>\n",
            TOP + plotH / 2,
            TOP + plotH / 2,
            esc(r.retentionBasis())));
    for (Point p : points) {
      double xv = log ? Math.log10(Math.max(p.bytes(), minBytes)) : p.bytes();
      double x = LEFT + plotW * (xv - x0) / (x1 - x0);
      double y = TOP + plotH - plotH * Math.max(0, p.retention()) / yMax;
      if (p.chosen()) {
        s.append(
            String.format(
                Locale.ROOT,
                "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"10\" fill=\"none\" stroke=\"%s\" "
                    + "stroke-width=\"2\"/>\n",
                x,
                y,
                p.color()));
      }
      s.append(
          String.format(
              Locale.ROOT,
              "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\"><title>%s: %s bytes, "
                  + "retention %s</title></circle><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
              x,
              y,
              p.color(),
              esc(p.name()),
              (long) p.bytes(),
              num(p.retention()),
              x + 8,
              y - 8,
              esc(p.name())));
    }
    s.append("</svg>\n");
    return s.toString();
  }

  static String esc(String s) {
    if (s == null) {
      return "";
    }
    return s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("\"", "&quot;");
  }

  private static String num(double v) {
    if (!Double.isFinite(v)) {
      return "&ndash;";
    }
    return Math.abs(v) >= 1000
        ? String.format(Locale.ROOT, "%.0f", v)
        : String.format(Locale.ROOT, "%.3f", v);
  }

  private static String bytes(double b) {
    if (b >= 1 << 30) {
      return String.format(Locale.ROOT, "%.1f GiB", b / (1 << 30));
    }
    if (b >= 1 << 20) {
      return String.format(Locale.ROOT, "%.1f MiB", b / (1 << 20));
    }
    if (b >= 1 << 10) {
      return String.format(Locale.ROOT, "%.1f KiB", b / (1 << 10));
    }
    return String.format(Locale.ROOT, "%.0f B", b);
  }
}
