//! `ssh -D`: a SOCKS4/4a/5 proxy whose connections leave from the server.

use std::net::SocketAddr;

use tracing::{debug, warn};
use tunneld_config::Endpoint;

use super::listen::Stream;
use super::local::log_end;
use super::{ForwardCtx, NoChannel, channel_for};
use crate::pump::pump;
use crate::socks::{self, SOCKS_HANDSHAKE_TIMEOUT};
use crate::status::ConnectionGuard;

/// Serves one SOCKS client.
pub(crate) async fn serve(
    mut stream: Stream,
    peer: Option<SocketAddr>,
    guard: ConnectionGuard,
    ctx: ForwardCtx,
) {
    // Each wait races the forward's stop: a stopping tunnel never waits on a client.
    let handshake = tokio::time::timeout(SOCKS_HANDSHAKE_TIMEOUT, socks::read_request(&mut stream));
    let request = match ctx.cancel.run_until_cancelled(handshake).await {
        None => return,
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => {
            debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "SOCKS handshake failed");
            return;
        }
        Some(Err(_)) => {
            debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, "SOCKS handshake timed out");
            return;
        }
    };
    let target = Endpoint::Tcp {
        host: request.host.clone(),
        port: request.port,
    };
    let (channel, cancel) = match channel_for(&ctx, &target, peer).await {
        None => return,
        Some(Ok(opened)) => opened,
        Some(Err(why)) => {
            let error = match why {
                NoChannel::Down => "the tunnel is down".to_owned(),
                NoChannel::Refused(e) => e,
            };
            warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %error, "SOCKS connect refused");
            let _ = socks::reply_failure(&mut stream, request.version).await;
            return;
        }
    };
    // The connection lives and dies with the session (and the tunnel).
    if socks::reply_success(&mut stream, request.version)
        .await
        .is_err()
    {
        return;
    }
    log_end(&ctx, pump(stream, channel, &guard, &cancel).await);
}
