//! The handshake phase of a worker's connection: the request is validated, the
//! handler's `on_open` decides, and the 101 or the rejection is queued.

use std::time::Instant;

use duplex_core::{Connection, Role};
use duplex_handshake::http::{Request, Response, StatusCode, header};
use duplex_handshake::{ClientOffer, write_response};

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
        let offer = match ClientOffer::from_request(&request) {
            Ok(offer) => offer,
            Err(error) => return self.reject(slot, error.response()),
        };
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        if entry.reject || self.shutdown_deadline.is_some() {
            return self.reject(slot, plain_response(StatusCode::SERVICE_UNAVAILABLE));
        }
        entry.state = State::Open {
            conn: Box::new(Connection::new(Role::Server, self.engine.clone())),
        };
        let id = self.local.id(slot);
        let factory = self.factory;
        let opened = guarded(id, "its factory or on_open", || {
            let mut handler = factory(id);
            let mut ctx = Context::new(&mut self.local, &self.shared, slot);
            let decision = handler.on_open(&mut ctx, &request, &offer);
            (handler, decision)
        });
        let Some((mut handler, decision)) = opened else {
            // The connection never opened: answer as an HTTP server does.
            self.local.unsubscribe_all(slot);
            return self.reject(slot, plain_response(StatusCode::INTERNAL_SERVER_ERROR));
        };
        let (response, deflate) = match decision {
            Ok(acceptance) => match offer
                .accept_negotiated(&acceptance, self.config.deflate.as_ref())
            {
                Ok(accepted) => accepted,
                Err(error) => {
                    guarded(id, "on_error", || {
                        let mut ctx = Context::new(&mut self.local, &self.shared, slot);
                        handler.on_error(&mut ctx, &ConnectionError::Handshake(error));
                    });
                    drop_handler(id, handler);
                    self.local.unsubscribe_all(slot);
                    return self.reject(slot, plain_response(StatusCode::INTERNAL_SERVER_ERROR));
                }
            },
            Err(rejection) => {
                drop_handler(id, handler);
                self.local.unsubscribe_all(slot);
                let mut response = rejection.into_response();
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                return self.reject(slot, response);
            }
        };
        self.handlers[slot] = Some(handler);
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        let mut head = Vec::new();
        write_response(&response, &mut head);
        entry.response = head;
        if let Some(conn) = entry.conn_mut() {
            if let Some(params) = deflate {
                conn.enable_deflate(params);
            }
            conn.receive(rest);
        }
        self.dispatch(slot);
    }

    /// Answers with `response` and closes (the connection never opened).
    pub(super) fn reject(&mut self, slot: usize, response: Response<String>) {
        let deadline = Instant::now() + self.config.handshake_timeout;
        let Some(entry) = self.local.entry_mut(slot) else {
            return;
        };
        let mut bytes = Vec::new();
        write_response(&response, &mut bytes);
        entry.response = bytes;
        entry.state = State::Rejecting { deadline };
        if let Some(handler) = self.handlers.get_mut(slot).and_then(Option::take) {
            drop_handler(self.local.id(slot), handler);
        }
    }
}

/// A plain-text response with `status` that closes the connection.
fn plain_response(status: StatusCode) -> Response<String> {
    let mut response = Response::new(format!(
        "{}\n",
        status.canonical_reason().unwrap_or("error")
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}
