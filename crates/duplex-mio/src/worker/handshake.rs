//! The handshake phase of a worker's connection: the request is validated, the
//! handler's `on_open` decides, and the 101 or the rejection is queued.

use std::time::Instant;

use duplex_core::{Connection, Role};
use duplex_handshake::http::{Request, StatusCode};
use duplex_handshake::{Decision, Rejection, ServerError, decide, write_response};

use super::guard::{drop_handler, guarded};
use super::{State, Worker};
use crate::context::Context;
use crate::error::ConnectionError;
use crate::server::{ConnectionId, Handler};

impl<F, H> Worker<'_, F, H>
where
    F: Fn(ConnectionId) -> H,
    H: Handler,
{
    pub(super) fn on_request(&mut self, slot: usize, request: Request<()>, rest: &[u8]) {
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        if entry.reject
            || self.shutdown_deadline.is_some()
            || self.engine.refuses_new_server_connections()
        {
            return self.reject(slot, Decision::unavailable());
        }
        entry.state = State::Open {
            conn: Box::new(Connection::new(Role::Server, self.engine.clone())),
        };
        let id = self.local.id(slot);
        let factory = self.factory;
        let mut handler = None;
        let mut panicked = false;
        let decision = decide(&request, self.config.deflate.as_ref(), |request, offer| {
            let opened = guarded(id, "its factory or on_open", || {
                let mut opened = factory(id);
                let mut ctx = Context::new(&mut self.local, &self.shared, slot);
                let decision = opened.on_open(&mut ctx, request, offer);
                (opened, decision)
            });
            match opened {
                Some((opened, decision)) => {
                    handler = Some(opened);
                    decision
                }
                None => {
                    panicked = true;
                    Err(Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, ""))
                }
            }
        });
        let decision = if panicked {
            Decision::application_error("the handler panicked in its factory or on_open")
        } else {
            decision
        };
        let accepted = match decision {
            Decision::Accept(accepted) => accepted,
            Decision::Refuse(refused) => {
                if let (Some(mut handler), ServerError::Application(_)) = (handler, &refused.error)
                {
                    // Our own decision failed: the handler hears why before it goes.
                    let error = ConnectionError::Handshake(refused.error.clone());
                    guarded(id, "on_error", || {
                        let mut ctx = Context::new(&mut self.local, &self.shared, slot);
                        handler.on_error(&mut ctx, &error);
                    });
                    drop_handler(id, handler);
                }
                // The connection never opened: it leaves any topic on_open joined.
                self.local.unsubscribe_all(slot);
                return self.reject(slot, Decision::Refuse(refused));
            }
        };
        self.handlers[slot] = handler;
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        let mut response = Vec::new();
        write_response(&accepted.response, &mut response);
        entry.response = unwritten(response);
        if let Some(conn) = entry.conn_mut() {
            if let Some(params) = accepted.deflate {
                conn.enable_deflate(params);
            }
            conn.receive(rest);
        }
        self.dispatch(slot);
    }

    /// Answers with the refusal and closes (the connection never opened).
    pub(super) fn reject(&mut self, slot: usize, decision: Decision) {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        entry.response = unwritten(decision.response_bytes());
        entry.state = State::Rejecting { deadline };
        if let Some(handler) = self.handlers.get_mut(slot).and_then(Option::take) {
            drop_handler(self.local.id(slot), handler);
        }
    }
}

/// Response bytes for [`Entry::response`](super::Entry), which holds only bytes still to
/// be written.
fn unwritten(response: Vec<u8>) -> Option<Box<bytes::Bytes>> {
    (!response.is_empty()).then(|| Box::new(response.into()))
}
