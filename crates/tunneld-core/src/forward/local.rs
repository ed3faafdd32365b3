//! `ssh -L`: accept locally, open a `direct-tcpip` (or `direct-streamlocal`) channel for
//! each connection.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, warn};
use tunneld_config::Endpoint;

use super::listen::{Listener, Stream};
use super::{ForwardCtx, open_channel};
use crate::pump::{PumpError, pump};

/// After an accept error (EMFILE and the like) wait this long instead of spinning.
pub(crate) const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Accepts connections until cancelled, handing each to `handle`.
pub(crate) async fn accept_loop<F, Fut>(listener: Listener, ctx: ForwardCtx, handle: F)
where
    F: Fn(Stream, Option<SocketAddr>, ForwardCtx) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    ctx.tracker.spawn(handle(stream, peer, ctx.clone()));
                }
                Err(e) => {
                    warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "accept failed");
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                    }
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
    ctx: ForwardCtx,
) {
    let guard = ctx.counters.open();
    let Some(session) = ctx.session().await else {
        debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, "no session; connection closed");
        return;
    };
    let channel = match open_channel(&session, &target, peer).await {
        Ok(c) => c,
        Err(e) => {
            warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "connection refused");
            return;
        }
    };
    // The connection lives and dies with this session (and the tunnel).
    let cancel = session.shared.conn_cancel.clone();
    drop(session);
    log_end(
        &ctx,
        pump(stream, channel, &guard, &cancel, ctx.stall).await,
    );
}

/// Logs how a connection ended: a stalled reader is worth a warning, the rest is routine.
pub(crate) fn log_end(ctx: &ForwardCtx, r: Result<(), PumpError>) {
    match r {
        Ok(()) => {}
        Err(e @ PumpError::StalledReader(_)) => {
            warn!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "connection closed")
        }
        Err(e) => debug!(tunnel = %ctx.tunnel, forward = %ctx.spec, error = %e, "connection ended"),
    }
}
