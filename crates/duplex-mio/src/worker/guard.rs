//! Panic guards around handler code.

use std::panic::{self, AssertUnwindSafe};

use crate::server::ConnectionId;

/// Runs handler code (a callback, the factory), catching a panic so that it does not
/// take the worker thread and its other connections down. A panic is written to
/// stderr (after the panic hook's own message) and gives `None`.
pub(super) fn guarded<R>(id: ConnectionId, what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(not a string)");
            eprintln!(
                "duplex-mio: the handler of connection {id} panicked in {what}: {message}; \
                 the handler is dropped and the connection closed"
            );
            // A payload whose destructor panics must not escape either.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            None
        }
    }
}

/// Drops a handler, catching a panic in its destructor.
pub(super) fn drop_handler<H>(id: ConnectionId, handler: H) {
    guarded(id, "its destructor", move || drop(handler));
}
