//! How a delivered message is framed for clients.

use duplex_core::{Bytes, Message};

use crate::{Event, Position};

/// How the hub frames each message once per node before sending it to local
/// subscribers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// The message as published. The client does not learn positions from the wire
    /// (the application may put its own sequence in the payload).
    #[default]
    Raw,
    /// The position goes with the message, so a browser can resume:
    /// text messages become `{"topic":T,"epoch":E,"offset":O,"data":TEXT}` (a JSON
    /// object; `data` is the text as a JSON string, epochs are below 2^53); binary
    /// messages become `epoch (u64 BE) ‖ offset (u64 BE) ‖ topic length (u16 BE) ‖
    /// topic ‖ payload`.
    Envelope,
}

impl Framing {
    /// Frames `message` of `topic` at `position`.
    pub fn frame(self, topic: &str, position: Position, message: &Message) -> Message {
        match self {
            Self::Raw => message.clone(),
            Self::Envelope => match message {
                Message::Text(text) => {
                    let mut out = String::with_capacity(text.len() + topic.len() + 64);
                    out.push_str("{\"topic\":");
                    json_string(topic, &mut out);
                    out.push_str(&format!(
                        ",\"epoch\":{},\"offset\":{},\"data\":",
                        position.epoch, position.offset
                    ));
                    json_string(text, &mut out);
                    out.push('}');
                    Message::text(out)
                }
                other => {
                    let payload = other.payload();
                    let mut out = Vec::with_capacity(payload.len() + topic.len() + 18);
                    out.extend_from_slice(&position.epoch.to_be_bytes());
                    out.extend_from_slice(&position.offset.to_be_bytes());
                    out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
                    out.extend_from_slice(topic.as_bytes());
                    out.extend_from_slice(payload);
                    Message::Binary(Bytes::from(out))
                }
            },
        }
    }
}

/// Appends `text` as a JSON string literal.
pub(crate) fn json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON a client gets for a notice (the same shape as
/// [`Framing::Envelope`](crate::Framing::Envelope) messages, with no `data`):
///
/// - `{"topic":T,"lagged":{"epoch":E,"first":F,"last":L}}`
/// - `{"topic":T,"lost":REASON,"after":{"epoch":E,"offset":O}|null,"resumed":{...}|null}`
///   with REASON one of `epoch_changed`, `trimmed`, `too_many`, `unavailable`.
/// - `{"topic":T,"presence":"join"|"leave","client":C,"info":I}`
///
/// `None` for messages and [`Event::Closed`].
pub fn notice_json(event: &Event) -> Option<String> {
    let pos = |p: &Option<Position>| match p {
        Some(p) => format!("{{\"epoch\":{},\"offset\":{}}}", p.epoch, p.offset),
        None => "null".to_owned(),
    };
    let mut out = String::from("{\"topic\":");
    match event {
        Event::Lagged {
            topic,
            epoch,
            first,
            last,
        } => {
            json_string(topic, &mut out);
            out.push_str(&format!(
                ",\"lagged\":{{\"epoch\":{epoch},\"first\":{first},\"last\":{last}}}}}"
            ));
        }
        Event::NotRecovered {
            topic,
            after,
            resumed,
            reason,
        } => {
            json_string(topic, &mut out);
            let reason = reason.code();
            out.push_str(&format!(
                ",\"lost\":\"{reason}\",\"after\":{},\"resumed\":{}}}",
                pos(after),
                pos(resumed)
            ));
        }
        Event::Presence {
            topic,
            change,
            member,
        } => {
            json_string(topic, &mut out);
            out.push_str(&format!(",\"presence\":\"{}\",\"client\":", change.code()));
            json_string(&member.client, &mut out);
            out.push_str(",\"info\":");
            json_string(&member.info, &mut out);
            out.push('}');
        }
        Event::Message(_) | Event::Closed(_) => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_text_is_json() {
        let framed = Framing::Envelope.frame(
            "r\"1",
            Position {
                epoch: 7,
                offset: 3,
            },
            &Message::text("a\nb\u{1}"),
        );
        assert_eq!(
            framed.as_text(),
            Some(r#"{"topic":"r\"1","epoch":7,"offset":3,"data":"a\nb\u0001"}"#)
        );
    }

    #[test]
    fn envelope_binary_has_header() {
        let framed = Framing::Envelope.frame(
            "t",
            Position {
                epoch: 1,
                offset: 2,
            },
            &Message::binary(vec![9u8]),
        );
        assert_eq!(
            framed.payload(),
            &[
                0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, b't', 9
            ]
        );
    }
}
