package io.distillery.serving;

import static org.assertj.core.api.Assertions.assertThat;

import io.distillery.runtime.artefact.FileArtefactStore;
import io.distillery.schemas.common.ArtefactRef;
import io.distillery.schemas.deployment.DeploymentActive;
import io.distillery.schemas.deployment.DeploymentEvent;
import io.distillery.serving.model.ServedModel;
import io.vertx.core.json.JsonObject;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Rollout on one node without Kafka: hot swaps under concurrent load, canary routing and rollback.
 */
class HotSwapTest {

  @TempDir Path tmp;

  record Answer(long startedNanos, int status, String sha) {}

  @Test
  void shouldNotFailARequestWhileTheModelIsSwappedTwiceUnderConcurrentLoad() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef a = Rollouts.pack(store, tmp, 32, 1);
    ArtefactRef b = Rollouts.pack(store, tmp, 48, 2);
    ArtefactRef c = Rollouts.pack(store, tmp, 32, 3);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("swap")
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY)
            .withCapacity(4, 64, 64);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", a, 100, null));
      ServedModel first = node.routing("chat").stable();
      List<Answer> answers = new CopyOnWriteArrayList<>();
      AtomicBoolean stop = new AtomicBoolean();
      AtomicInteger done = new AtomicInteger();
      ExecutorService clients = Executors.newFixedThreadPool(8);
      List<Future<?>> running = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int client = t;
        running.add(
            clients.submit(
                () -> {
                  int i = 0;
                  while (!stop.get()) {
                    long started = System.nanoTime();
                    Http.Reply r =
                        Http.complete(
                            node.url(),
                            new JsonObject()
                                .put("model", "chat")
                                .put("prompt", "client " + client + " request " + i++)
                                .put("max_tokens", 8));
                    String sha =
                        r.status() == 200
                            ? r.json().getJsonObject("distillery").getString("artefactSha256")
                            : null;
                    answers.add(new Answer(started, r.status(), sha));
                    done.incrementAndGet();
                  }
                  return null;
                }));
      }
      awaitCount(done, 20);
      node.apply(Rollouts.requested("chat", b, 100, null));
      ServedModel second = node.routing("chat").stable();
      awaitCount(done, done.get() + 20);
      node.apply(Rollouts.requested("chat", c, 100, null));
      long swappedToC = System.nanoTime();
      awaitCount(done, done.get() + 20);
      stop.set(true);
      for (Future<?> f : running) {
        f.get();
      }
      clients.shutdown();

      assertThat(answers).allSatisfy(x -> assertThat(x.status()).isEqualTo(200));
      assertThat(answers)
          .extracting(Answer::sha)
          .contains(a.getSha256(), b.getSha256(), c.getSha256());
      assertThat(answers)
          .filteredOn(x -> x.startedNanos() > swappedToC)
          .isNotEmpty()
          .allSatisfy(x -> assertThat(x.sha()).isEqualTo(c.getSha256()));
      assertThat(first.isFreed()).as("A freed once its requests ended").isTrue();
      assertThat(second.isFreed()).as("B freed once its requests ended").isTrue();
      assertThat(node.routing("chat").stable().isFreed()).isFalse();
      assertThat(actives(events))
          .extracting(DeploymentActive::getArtefactSha256)
          .containsExactly(a.getSha256(), b.getSha256(), c.getSha256());
      assertThat(actives(events)).allSatisfy(x -> assertThat(x.getUrl()).isEqualTo(node.url()));
    }
  }

  @Test
  void shouldRouteTheCanaryShareAndDropTheCanaryOnRollback() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef stable = Rollouts.pack(store, tmp, 32, 4);
    ArtefactRef canary = Rollouts.pack(store, tmp, 32, 5);
    CapturedEvents events = new CapturedEvents();
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("canary")
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode node = ServingNode.start(config, events)) {
      node.apply(Rollouts.requested("chat", stable, 100, null));
      node.apply(Rollouts.requested("chat", canary, 30, null));

      Map<String, Integer> bySha = countShas(node, 100);
      assertThat(bySha).containsEntry(canary.getSha256(), 30).containsEntry(stable.getSha256(), 70);
      assertThat(actives(events))
          .last()
          .satisfies(x -> assertThat(x.getCanaryPercent()).isEqualTo(30));
      ServedModel canaryModel = node.routing("chat").canary();

      node.apply(Rollouts.rolledBack("chat", stable));
      assertThat(countShas(node, 10)).containsOnlyKeys(stable.getSha256());
      assertThat(canaryModel.isFreed()).isTrue();

      node.apply(Rollouts.requested("chat", canary, 30, null));
      node.apply(Rollouts.requested("chat", canary, 100, null));
      assertThat(countShas(node, 5)).containsOnlyKeys(canary.getSha256());
      assertThat(node.routing("chat").canary()).isNull();
    }
  }

  @Test
  void shouldKeepServingTheOldModelWhenANewArtefactCannotBeLoaded() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef good = Rollouts.pack(store, tmp, 32, 6);
    ArtefactRef outside =
        ArtefactRef.newBuilder(good)
            .setUri(tmp.resolve("elsewhere").toUri().toString())
            .setSha256("f".repeat(64))
            .build();
    ServingConfig config =
        ServingConfig.of(null, null, store.root())
            .withNodeId("bad")
            .withConfidenceThreshold(Double.NEGATIVE_INFINITY);
    try (ServingNode node = ServingNode.start(config, new CapturedEvents())) {
      node.apply(Rollouts.requested("chat", good, 100, null));
      org.assertj.core.api.Assertions.assertThatThrownBy(
              () -> node.apply(Rollouts.requested("chat", outside, 100, null)))
          .hasMessageContaining("outside the store's roots");
      assertThat(countShas(node, 2)).containsOnlyKeys(good.getSha256());
    }
  }

  private static List<DeploymentActive> actives(CapturedEvents events) {
    return events.of(DeploymentEvent.class).stream()
        .map(DeploymentEvent::getPayload)
        .filter(DeploymentActive.class::isInstance)
        .map(DeploymentActive.class::cast)
        .toList();
  }

  private static Map<String, Integer> countShas(ServingNode node, int requests) throws Exception {
    Map<String, Integer> bySha = new ConcurrentHashMap<>();
    for (int i = 0; i < requests; i++) {
      Http.Reply r =
          Http.complete(node.url(), new JsonObject().put("prompt", "q" + i).put("max_tokens", 1));
      assertThat(r.status()).as(r.text()).isEqualTo(200);
      bySha.merge(
          r.json().getJsonObject("distillery").getString("artefactSha256"), 1, Integer::sum);
    }
    return bySha;
  }

  private static void awaitCount(AtomicInteger done, int target) throws InterruptedException {
    long deadline = System.nanoTime() + 60_000_000_000L;
    while (done.get() < target) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError(
            "only " + done.get() + " of " + target + " requests answered in 60 s");
      }
      Thread.sleep(5);
    }
  }

  @Test
  void shouldFreeTheReplacedTeacherAndShareOneTeacherPerArtefact() throws Exception {
    FileArtefactStore store = new FileArtefactStore(tmp.resolve("store"));
    ArtefactRef student = Rollouts.pack(store, tmp, 32, 31);
    ArtefactRef t1 = Rollouts.pack(store, tmp, 48, 32);
    ArtefactRef t2 = Rollouts.pack(store, tmp, 48, 33);
    ServingConfig config = ServingConfig.of(null, null, store.root()).withNodeId("teachers");
    try (ServingNode node = ServingNode.start(config, new CapturedEvents())) {
      node.apply(Rollouts.requested("chat", student, 100, t1));
      // the same teacher artefact served locally from its directory is the same loaded model, not a
      // second copy
      node.serveLocal("local", store.resolve(student), store.resolve(t1));
      ServedModel first = node.routing("chat").teacher();
      assertThat(node.routing("local").teacher()).isSameAs(first);

      node.apply(Rollouts.requested("chat", student, 100, t2));
      assertThat(first.isFreed()).as("still the teacher of 'local'").isFalse();
      node.serveLocal("local", store.resolve(student), store.resolve(t2));

      assertThat(node.routing("chat").teacher().sha256()).isEqualTo(t2.getSha256());
      assertThat(node.routing("local").teacher()).isSameAs(node.routing("chat").teacher());
      assertThat(first.isFreed()).as("no deployment names the first teacher any more").isTrue();
    }
  }
}
