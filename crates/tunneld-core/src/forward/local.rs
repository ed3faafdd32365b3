//! `ssh -L`: accept locally, open a `direct-tcpip` (or `direct-streamlocal`) channel for
//! each connection.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, warn};
use tunneld_config::Endpoint;

use super::listen::{Listener, Stream};
use super::{ForwardCtx, NoChannel, admit, channel_for};
use crate::pump::{PumpError, pump};
use crate::status::ConnectionGuard;

/// After an accept error (EMFILE and the like) wait this long instead of spinning...
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// ...doubling while the errors go on, up to this.
const ACCEPT_ERROR_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Accepts connections until cancelled, handing each to `handle` with its place under
/// the forward's connection limit; over the limit, a connection is closed at once.
pub(crate) async fn accept_loop<F, Fut>(listener: Listener, ctx: ForwardCtx, handle: F)
where
    F: Fn(Stream, Option<SocketAddr>, ConnectionGuard, ForwardCtx) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut pause = ACCEPT_ERROR_PAUSE;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    pause = ACCEPT_ERROR_PAUSE;
                    if let Some(guard) = admit(&ctx.counters, &ctx.tunnel, &ctx.spec) {
                        ctx.tracker.spawn(handle(stream, peer, guard, ctx.clone()));
                    }
                }
                Err(e) => {
                    // Out of file descriptors, typically: the pending connection stays
                    // queued, so retrying at once would spin.
                    warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e,
                          retry_in = ?pause, "accept failed");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(ACCEPT_ERROR_PAUSE_MAX);
                }
            }
        }
    }
}

/// Serves one accepted `-L` connection.
pub(crate) async fn serve(
    stream: Stream,
    peer: Option<SocketAddr>,
    target: Endpoint,
    guard: ConnectionGuard,
    ctx: ForwardCtx,
) {
    let (channel, cancel) = match channel_for(&ctx, &target, peer).await {
        None => return,
        Some(Ok(opened)) => opened,
        Some(Err(NoChannel::Down)) => {
            debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, "no session; connection closed");
            return;
        }
        Some(Err(NoChannel::Refused(e))) => {
            warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "connection refused");
            return;
        }
    };
    // The connection lives and dies with the session (and the tunnel).
    log_end(&ctx, pump(stream, channel, &guard, &cancel).await);
}

/// Logs how a connection ended (routine either way: peers close and reset).
pub(crate) fn log_end(ctx: &ForwardCtx, r: Result<(), PumpError>) {
    if let Err(e) = r {
        debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "connection ended");
    }
}
