//! The one way the crate takes a std mutex.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking it over even when a panicking holder poisoned it: what these
/// mutexes guard (routing tables, status details, small caches) is valid after any
/// single update, and a panic in one tunnel's task must not make the next one panic too
/// (the supervisor restarts a panicked tunnel and carries on).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
