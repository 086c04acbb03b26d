package io.distillery.model.train;

import io.distillery.model.llama.LlamaModel;

/** A trained model with its report; closing it frees the model. */
public record TrainedTeacher(LlamaModel model, TeacherReport report) implements AutoCloseable {

  @Override
  public void close() {
    model.close();
  }
}
