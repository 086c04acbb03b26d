package io.distillery.runtime.serde;

import java.io.IOException;

/**
 * The registry refused a call or could not be reached. Carries the HTTP status and Confluent error
 * code if any.
 */
public final class SchemaRegistryException extends RuntimeException {
  private final int httpStatus;
  private final int errorCode;

  public SchemaRegistryException(String message) {
    this(message, 0, 0);
  }

  public SchemaRegistryException(String message, Throwable cause) {
    super(message, cause);
    this.httpStatus = 0;
    this.errorCode = 0;
  }

  public SchemaRegistryException(String message, int httpStatus, int errorCode) {
    super(message);
    this.httpStatus = httpStatus;
    this.errorCode = errorCode;
  }

  public int httpStatus() {
    return httpStatus;
  }

  public int errorCode() {
    return errorCode;
  }

  /**
   * The registry could not be reached, or failed on its side (5xx): the same call may well succeed
   * later, and the record that needed it is not at fault.
   */
  public boolean isTransient() {
    return httpStatus >= 500 || (httpStatus == 0 && getCause() instanceof IOException);
  }
}
