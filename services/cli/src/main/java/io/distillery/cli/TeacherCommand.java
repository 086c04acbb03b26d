package io.distillery.cli;

import io.distillery.model.train.TeacherMain;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Unmatched;

/**
 * {@code distillery teacher --out DIR ...}: trains the project's tiny teacher on the task suite
 * (see TeacherMain).
 */
@Command(
    name = "teacher",
    description =
        "Train the tiny Llama teacher on the task suite and write an HF checkpoint."
            + " Options: --out DIR [--steps N] [--batch N] [--lr X] [--layers N] [--hidden N] [--heads N] [--kv-heads N]"
            + " [--intermediate N] [--seed N] [--threads N] [--tasks add,copy,rev,kv,sort] ...")
final class TeacherCommand implements Callable<Integer> {

  @Unmatched List<String> args = new ArrayList<>();

  @Override
  public Integer call() throws Exception {
    return TeacherMain.execute(args.toArray(String[]::new), System.out, System.err);
  }
}
