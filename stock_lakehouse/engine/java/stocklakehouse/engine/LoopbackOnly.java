package stocklakehouse.engine;

import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import org.sparkproject.connect.grpc.Grpc;
import org.sparkproject.connect.grpc.Metadata;
import org.sparkproject.connect.grpc.ServerCall;
import org.sparkproject.connect.grpc.ServerCallHandler;
import org.sparkproject.connect.grpc.ServerInterceptor;
import org.sparkproject.connect.grpc.Status;

/**
 * Spark Connect 3.5 has no authentication and no bind address (the server listens on every interface):
 * this interceptor refuses every call that does not come from this machine's loopback, before Spark sees
 * it. Installed with spark.connect.grpc.interceptor.classes.
 */
public final class LoopbackOnly implements ServerInterceptor {

  public ServerCall.Listener interceptCall(ServerCall call, Metadata headers, ServerCallHandler next) {
    SocketAddress remote = (SocketAddress) call.getAttributes().get(Grpc.TRANSPORT_ATTR_REMOTE_ADDR);
    if (remote instanceof InetSocketAddress) {
      InetAddress address = ((InetSocketAddress) remote).getAddress();
      if (address != null && address.isLoopbackAddress()) {
        return next.startCall(call, headers);
      }
    }
    call.close(
        Status.PERMISSION_DENIED.withDescription(
            "this Spark engine serves loopback clients only"),
        new Metadata());
    return new ServerCall.Listener() {};
  }
}
