package stocklakehouse.bi;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import javax.security.sasl.AuthenticationException;
import org.apache.hive.service.auth.PasswdAuthenticationProvider;

/**
 * HiveServer2 CUSTOM authentication against one user and the SHA-256 of its password, handed over by
 * the server's Python side (which reads them from the environment): the JVM never holds the password.
 */
public final class PasswordAuthenticator implements PasswdAuthenticationProvider {

  private static volatile String user;
  private static volatile byte[] passwordSha256;

  public static void configure(String expectedUser, String passwordSha256Hex) {
    byte[] digest = new byte[passwordSha256Hex.length() / 2];
    for (int i = 0; i < digest.length; i++) {
      digest[i] = (byte) Integer.parseInt(passwordSha256Hex.substring(2 * i, 2 * i + 2), 16);
    }
    passwordSha256 = digest;
    user = expectedUser;
  }

  public void Authenticate(String givenUser, String givenPassword) throws AuthenticationException {
    byte[] expected = passwordSha256;
    if (expected == null || user == null) {
      throw new AuthenticationException("no credentials configured");
    }
    byte[] given = sha256(givenPassword == null ? "" : givenPassword);
    boolean userOk = MessageDigest.isEqual(
        sha256(givenUser == null ? "" : givenUser), sha256(user));
    if (!(userOk & MessageDigest.isEqual(given, expected))) {
      throw new AuthenticationException("wrong user or password");
    }
  }

  private static byte[] sha256(String text) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(text.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
