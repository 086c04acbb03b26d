package io.distillery.stage;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import java.util.stream.Collectors;

/**
 * Binds a job's params JSON to a stage's params record, in one place. Unknown keys, wrong types and
 * the record's own validation (an {@link IllegalArgumentException} from its compact constructor)
 * all fail the job as fatal, with the param's name in the message.
 */
public final class StageParams {

  private static final ObjectMapper JSON =
      new ObjectMapper()
          .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES)
          .enable(DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES);

  private StageParams() {}

  public static <P extends Record> P bind(String stage, String json, Class<P> type)
      throws StageException.Fatal {
    try {
      return JSON.readValue(json == null || json.isBlank() ? "{}" : json, type);
    } catch (UnrecognizedPropertyException e) {
      throw StageException.fatal(
          "invalid params for stage "
              + stage
              + ": unknown param '"
              + e.getPropertyName()
              + "'; known params: "
              + e.getKnownPropertyIds(),
          e);
    } catch (JsonMappingException e) {
      Throwable root = e;
      while (root.getCause() != null && root.getCause() != root) {
        root = root.getCause();
      }
      String path =
          e.getPath().stream()
              .map(r -> r.getFieldName() != null ? r.getFieldName() : "[" + r.getIndex() + "]")
              .collect(Collectors.joining("."));
      String why =
          root instanceof IllegalArgumentException ? root.getMessage() : e.getOriginalMessage();
      throw StageException.fatal(
          "invalid params for stage "
              + stage
              + (path.isEmpty() ? "" : ": param '" + path + "'")
              + ": "
              + why,
          e);
    } catch (JsonProcessingException e) {
      throw StageException.fatal(
          "invalid params for stage " + stage + ": not a JSON object: " + e.getOriginalMessage(),
          e);
    }
  }
}
