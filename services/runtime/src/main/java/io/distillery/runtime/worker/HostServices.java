package io.distillery.runtime.worker;

import io.distillery.runtime.artefact.ArtefactStore;
import io.distillery.runtime.kafka.KafkaSettings;

/**
 * What a worker host lends to a stage that must itself talk to the cluster while it runs (the
 * deployer publishes DeploymentRequested and watches serving nodes answer) or must place an
 * artefact in the store before its job ends (a deployment request carries the package's reference).
 * Most stages need neither and never see this.
 *
 * @param kafka the host's cluster and registry
 * @param store the host's artefact store
 * @param workerId the host's identity, for client ids and event fields
 */
public record HostServices(KafkaSettings kafka, ArtefactStore store, String workerId) {

  /**
   * Implemented by a stage that wants the host's services; the host calls {@link #attach} once,
   * before any job.
   */
  public interface Aware {
    void attach(HostServices services);
  }
}
