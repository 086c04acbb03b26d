package io.distillery.stage;

import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Names a {@link Stage} implementation and its params record, read without instantiating the stage.
 */
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.TYPE)
public @interface StagePlugin {

  /** The stage name: the suffix of the jobs topic it consumes ({@code distillery.jobs.<name>}). */
  String name();

  /**
   * The params record; the job's params JSON is bound to it and validated by its compact
   * constructor.
   */
  Class<? extends Record> params();

  /** Whether an identical job (same stage, params and input hashes) may reuse an earlier output. */
  boolean cacheable() default true;

  /** A one-line description for {@code distillery stages}. */
  String description() default "";
}
