package io.distillery.serving;

/**
 * A request the node refuses, with the HTTP status and the message the client sees (naming the
 * field).
 */
public final class BadRequestException extends RuntimeException {

  private final int status;
  private final String param;

  public BadRequestException(int status, String message, String param) {
    super(message);
    this.status = status;
    this.param = param;
  }

  public static BadRequestException invalid(String param, String message) {
    return new BadRequestException(400, message, param);
  }

  public int status() {
    return status;
  }

  /** The offending request field, or null. */
  public String param() {
    return param;
  }
}
