package io.distillery.stage;

import java.util.ServiceLoader;

/** A discovered stage: its annotation's facts and a way to instantiate it. */
public record StageDescriptor(
    String name,
    Class<? extends Record> params,
    boolean cacheable,
    String description,
    ServiceLoader.Provider<Stage<?>> provider) {

  @SuppressWarnings("unchecked")
  public <P extends Record> Stage<P> instantiate() {
    return (Stage<P>) provider.get();
  }
}
