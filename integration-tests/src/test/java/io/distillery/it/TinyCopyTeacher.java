package io.distillery.it;

import ai.djl.engine.Engine;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.training.GradientCollector;
import io.distillery.model.config.LlamaConfig;
import io.distillery.model.llama.LlamaModel;
import io.distillery.model.tasks.TaskBatch;
import io.distillery.model.tasks.TaskExample;
import io.distillery.model.tokenizer.ByteTokenizer;
import io.distillery.model.train.AdamW;
import java.util.List;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The integration tests' tiny teacher: a Llama that has memorised a handful of "copy one letter"
 * examples.
 */
final class TinyCopyTeacher {

  private static final Logger LOG = LoggerFactory.getLogger(TinyCopyTeacher.class);

  private TinyCopyTeacher() {}

  /**
   * Mean answer NLL below which every answer token is the argmax (each token's NLL < 52 * 0.01 < ln
   * 2).
   */
  static final double MEMORISED_NLL = 0.01;

  /**
   * A one-layer byte-level Llama trained until it has memorised every example rather than for a
   * fixed number of steps: multi-threaded CPU kernels make a fixed-step run land anywhere from all
   * answers right to less than half on a loaded machine, and the tests need a teacher that is
   * right.
   */
  static LlamaModel memorise(List<TaskExample> examples) {
    LlamaConfig config =
        LlamaConfig.builder()
            .vocabSize(ByteTokenizer.VOCAB_SIZE)
            .hiddenSize(32)
            .intermediateSize(64)
            .numHiddenLayers(1)
            .numAttentionHeads(4)
            .numKeyValueHeads(2)
            .maxPositionEmbeddings(64)
            .build();
    LlamaModel model = LlamaModel.random(config, 5);
    TaskBatch batch = TaskBatch.of(examples, ByteTokenizer.instance());
    model.setTrainable(true);
    double loss = Double.NaN;
    int step = 0;
    try (AdamW optimizer = new AdamW(model.parameters(), model.manager(), 0.9, 0.95, 1e-8, 0.0)) {
      for (; step < 1000 && !(loss < MEMORISED_NLL); step++) {
        try (NDManager scope = model.manager().newSubManager();
            GradientCollector collector = Engine.getEngine("PyTorch").newGradientCollector()) {
          NDArray nll = batch.answerNllMean(model.forward(scope, batch.inputs()), scope);
          loss = nll.getFloat();
          collector.backward(nll);
        }
        optimizer.step(1e-2, 1.0);
        model.zeroGradients();
      }
    } finally {
      model.setTrainable(false);
    }
    if (!(loss < MEMORISED_NLL)) {
      model.close();
      throw new IllegalStateException(
          "the tiny teacher did not memorise the copy task in "
              + step
              + " steps: answer NLL "
              + loss);
    }
    LOG.info("tiny teacher memorised steps={} answerNll={}", step, loss);
    return model;
  }
}
