/**
 * The local stack: a real Kafka KRaft broker in this JVM ({@link
 * io.distillery.stack.EmbeddedKafka}), the Apicurio schema registry as a child process ({@link
 * io.distillery.stack.SchemaRegistryProcess}), and both together under one run directory ({@link
 * io.distillery.stack.LocalStack}) for tests and {@code distillery up}.
 */
package io.distillery.stack;
