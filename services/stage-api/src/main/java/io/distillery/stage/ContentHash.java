package io.distillery.stage;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;

/**
 * The sha256 that names an artefact. A file hashes as {@code sha256(name \0 sha256(bytes))}; a
 * directory as the sha256 of its sorted lines {@code relative/path \0 sha256(bytes) \n}, so the
 * same tree always gets the same name.
 */
public final class ContentHash {

  private ContentHash() {}

  public static String of(Path path) throws IOException {
    MessageDigest md = sha256();
    if (Files.isDirectory(path)) {
      List<Path> files;
      try (Stream<Path> s = Files.walk(path)) {
        files = s.filter(Files::isRegularFile).sorted().toList();
      }
      for (Path f : files) {
        String rel = path.relativize(f).toString().replace('\\', '/');
        md.update((rel + '\0' + fileSha(f) + '\n').getBytes(StandardCharsets.UTF_8));
      }
    } else {
      md.update((path.getFileName() + "\0" + fileSha(path)).getBytes(StandardCharsets.UTF_8));
    }
    return HexFormat.of().formatHex(md.digest());
  }

  public static String fileSha(Path file) throws IOException {
    MessageDigest md = sha256();
    byte[] buf = new byte[1 << 16];
    try (InputStream in = Files.newInputStream(file)) {
      for (int n; (n = in.read(buf)) > 0; ) {
        md.update(buf, 0, n);
      }
    }
    return HexFormat.of().formatHex(md.digest());
  }

  public static String ofString(String s) {
    return HexFormat.of().formatHex(sha256().digest(s.getBytes(StandardCharsets.UTF_8)));
  }

  public static long sizeOf(Path path) throws IOException {
    if (!Files.isDirectory(path)) {
      return Files.size(path);
    }
    try (Stream<Path> s = Files.walk(path)) {
      long total = 0;
      for (Path f : (Iterable<Path>) s.filter(Files::isRegularFile)::iterator) {
        total += Files.size(f);
      }
      return total;
    }
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
