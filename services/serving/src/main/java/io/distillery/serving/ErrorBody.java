package io.distillery.serving;

import io.vertx.core.json.JsonObject;

/**
 * The OpenAI-style error body: {@code {"error": {"message", "type", "param"}}}, a server_error from
 * 500 on.
 */
final class ErrorBody {

  private ErrorBody() {}

  static JsonObject of(int status, String message, String param) {
    return new JsonObject()
        .put(
            "error",
            new JsonObject()
                .put("message", message)
                .put("type", status >= 500 ? "server_error" : "invalid_request_error")
                .put("param", param));
  }
}
