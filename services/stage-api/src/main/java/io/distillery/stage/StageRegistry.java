package io.distillery.stage;

import java.util.Collections;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.TreeMap;
import java.util.regex.Pattern;

/**
 * The stages found on the class path with {@link ServiceLoader}. Providers are read by their
 * annotation without being instantiated; an unannotated provider is skipped with a warning, a
 * duplicate name is an error.
 */
public final class StageRegistry {

  /** A stage name is a topic suffix: lower-case words joined by single hyphens. */
  public static final Pattern STAGE_NAME = Pattern.compile("[a-z][a-z0-9]*(-[a-z0-9]+)*");

  private static final System.Logger LOG = System.getLogger(StageRegistry.class.getName());

  private final Map<String, StageDescriptor> byName;

  private StageRegistry(Map<String, StageDescriptor> byName) {
    this.byName = Collections.unmodifiableMap(byName);
  }

  public static StageRegistry discover() {
    return discover(Thread.currentThread().getContextClassLoader());
  }

  @SuppressWarnings({"unchecked", "rawtypes"})
  public static StageRegistry discover(ClassLoader loader) {
    Map<String, StageDescriptor> found = new TreeMap<>();
    ServiceLoader<Stage<?>> sl = (ServiceLoader) ServiceLoader.load(Stage.class, loader);
    for (ServiceLoader.Provider<Stage<?>> p :
        (Iterable<ServiceLoader.Provider<Stage<?>>>) sl.stream()::iterator) {
      StagePlugin ann = p.type().getAnnotation(StagePlugin.class);
      if (ann == null) {
        LOG.log(
            System.Logger.Level.WARNING,
            "stage provider {0} has no @StagePlugin annotation; skipped",
            p.type().getName());
        continue;
      }
      if (!STAGE_NAME.matcher(ann.name()).matches()) {
        throw new IllegalStateException(
            "stage " + p.type().getName() + " has an invalid name '" + ann.name() + "'");
      }
      StageDescriptor previous =
          found.put(
              ann.name(),
              new StageDescriptor(ann.name(), ann.params(), ann.cacheable(), ann.description(), p));
      if (previous != null) {
        throw new IllegalStateException(
            "two stages are named '"
                + ann.name()
                + "': "
                + previous.provider().type().getName()
                + " and "
                + p.type().getName());
      }
    }
    return new StageRegistry(found);
  }

  public Map<String, StageDescriptor> all() {
    return byName;
  }

  public StageDescriptor get(String name) {
    StageDescriptor d = byName.get(name);
    if (d == null) {
      throw new IllegalArgumentException(
          "unknown stage '" + name + "'; known stages: " + byName.keySet());
    }
    return d;
  }
}
