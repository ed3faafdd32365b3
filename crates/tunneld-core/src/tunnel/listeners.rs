//! The local listeners of a tunnel's `local` (`-L`) and `dynamic` (`-D`) forwards: started
//! and stopped as a reload's forward changes say, each bound again on the tunnel's
//! backoff while its address is busy.
//!
//! Running listeners are known by their forward's parsed value, not its spec string:
//! `gateway_ports` changes where `"8080:intranet:80"` listens without changing the text.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tunneld_config::{DynamicForward, ForwardChanges, Listen, LocalForward};

use super::{Tunnel, lock};
use crate::backoff::Schedule;
use crate::forward::listen::{Listener, UnixOptions};
use crate::forward::{dynamic, local};
use crate::status::{ForwardKind, ForwardState};

/// How long a new listener waits for the one it replaces to close its socket.
const REPLACED_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A forward that has a local listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Listened {
    Local(LocalForward),
    Dynamic(DynamicForward),
}

impl Listened {
    fn kind(&self) -> ForwardKind {
        match self {
            Listened::Local(_) => ForwardKind::Local,
            Listened::Dynamic(_) => ForwardKind::Dynamic,
        }
    }

    fn spec(&self) -> &str {
        match self {
            Listened::Local(f) => &f.spec,
            Listened::Dynamic(f) => &f.spec,
        }
    }

    fn listen(&self) -> Listen {
        match self {
            Listened::Local(f) => f.listen.clone(),
            Listened::Dynamic(f) => Listen::Tcp {
                bind: f.bind.clone(),
                port: f.port,
            },
        }
    }
}

/// A listener's task, as the tunnel holds it.
pub(super) struct Running {
    forward: Listened,
    /// Stops the listener.
    stop: CancellationToken,
    /// Fires once the task has ended and its socket is closed.
    ended: CancellationToken,
}

/// Stops the listeners `changes` removes, then starts those it adds; a new listener first
/// waits (briefly) for the removed ones to let go of their addresses, as a forward moved
/// from 127.0.0.1 to 0.0.0.0 needs the same port.
pub(super) fn apply(t: &Arc<Tunnel>, changes: &ForwardChanges) {
    let removed = (changes.local_removed.iter().cloned().map(Listened::Local)).chain(
        changes
            .dynamic_removed
            .iter()
            .cloned()
            .map(Listened::Dynamic),
    );
    let added = (changes.local_added.iter().cloned().map(Listened::Local))
        .chain(changes.dynamic_added.iter().cloned().map(Listened::Dynamic));
    let mut running = lock(&t.listeners);
    let mut closing = Vec::new();
    for gone in removed {
        if let Some(i) = running.iter().position(|r| r.forward == gone) {
            let r = running.swap_remove(i);
            info!(tunnel = %t.name, forward = %gone.spec(), "forward removed; listener closed");
            r.stop.cancel();
            closing.push(r.ended);
        }
    }
    for forward in added {
        let stop = t.cancel.child_token();
        let ended = CancellationToken::new();
        running.push(Running {
            forward: forward.clone(),
            stop: stop.clone(),
            ended: ended.clone(),
        });
        let t2 = Arc::clone(t);
        let closing = closing.clone();
        t.tracker.spawn(async move {
            let _ended = ended.drop_guard();
            let wait = futures_util::future::join_all(closing.iter().map(|c| c.cancelled()));
            let _ = tokio::time::timeout(REPLACED_CLOSE_TIMEOUT, wait).await;
            serve(&t2, forward, stop).await;
        });
    }
}

/// Binds `forward`'s listener and serves it until `stop`.
async fn serve(t: &Arc<Tunnel>, forward: Listened, stop: CancellationToken) {
    let (kind, spec) = (forward.kind(), forward.spec().to_owned());
    let ctx = t.ctx(kind, &spec, stop);
    let Some(listener) = bind_until_done(t, kind, &spec, &forward.listen(), &ctx.cancel).await
    else {
        return;
    };
    match forward {
        Listened::Local(f) => {
            let target = f.target;
            local::accept_loop(listener, ctx, move |s, peer, guard, ctx| {
                local::serve(s, peer, target.clone(), guard, ctx)
            })
            .await;
        }
        Listened::Dynamic(_) => local::accept_loop(listener, ctx, dynamic::serve).await,
    }
}

/// Binds a listener, retrying on the tunnel's backoff while the address is busy.
async fn bind_until_done(
    t: &Tunnel,
    kind: ForwardKind,
    spec: &str,
    listen: &Listen,
    cancel: &CancellationToken,
) -> Option<Listener> {
    let mut schedule = Schedule::new(t.cfg.backoff);
    loop {
        let unix = UnixOptions {
            unlink: t.cfg.stream_local_bind_unlink,
            mask: t.cfg.stream_local_bind_mask,
        };
        match Listener::bind(listen, unix).await {
            Ok((l, skipped)) => {
                let at = l.addresses();
                info!(tunnel = %t.name, forward = %spec, listen = %at.join(", "), "listening");
                if let Some(e) = skipped {
                    warn!(tunnel = %t.name, forward = %spec, error = %e, "listening on fewer addresses than asked");
                }
                t.set_forward(kind, spec, ForwardState::Active, None, Some(at));
                return Some(l);
            }
            Err(e) => {
                warn!(tunnel = %t.name, forward = %spec, error = %e, "cannot bind local forward; will retry");
                t.set_forward(kind, spec, ForwardState::Error, Some(e), None);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(schedule.next_delay()) => {}
        }
    }
}
