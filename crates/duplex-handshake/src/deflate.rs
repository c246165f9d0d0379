//! Negotiating permessage-deflate (RFC 7692 section 7.1).

use duplex_core::DeflateParams;

use crate::error::HandshakeError;

/// One side's permessage-deflate policy: what a client offers, or what a server accepts
/// and asks for.
///
/// Window bits are 9..=15 here: zlib cannot compress with an 8-bit raw window, so we never
/// ask for one. A peer may still ask us for 8; we agree and then send that peer
/// uncompressed messages (always allowed), while inflating its messages normally.
///
/// It is the engine's [`DeflateParams`] under the name of its role here: one type with
/// the same four parameters serves as a policy (negotiated with the
/// [`DeflateNegotiation`] methods) and as the negotiated result the engine runs with.
///
/// ```
/// use duplex_handshake::{DeflateConfig, DeflateNegotiation};
///
/// // A server that keeps no compression context between messages (less memory).
/// let policy = DeflateConfig { server_no_context_takeover: true, ..DeflateConfig::default() };
/// let offer = ["permessage-deflate; client_max_window_bits".to_string()];
/// let (params, header) = policy.negotiate(&offer).expect("accepted");
/// assert!(params.server_no_context_takeover);
/// assert_eq!(header, "permessage-deflate; server_no_context_takeover");
/// ```
pub type DeflateConfig = DeflateParams;

const NAME: &str = "permessage-deflate";

/// An extension element: a name and its parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Element {
    name: String,
    params: Vec<(String, Option<String>)>,
}

/// The parameters of one permessage-deflate element, checked for duplicates, unknown
/// names and invalid values (which decline an offer, or fail a response).
#[derive(Debug, Default)]
struct Parsed {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// permessage-deflate negotiation (RFC 7692 section 7.1) with a [`DeflateConfig`] as
/// one side's policy.
pub trait DeflateNegotiation {
    /// The `Sec-WebSocket-Extensions` value a client sends. It always offers
    /// `client_max_window_bits`, as browsers do, so the server may choose our window.
    fn offer(&self) -> String;

    /// Server side: picks the first acceptable permessage-deflate offer among the
    /// client's `Sec-WebSocket-Extensions` values, and returns the negotiated parameters
    /// with the response header value. Offers with unknown, duplicated or invalid
    /// parameters are declined (RFC 7692 section 5); `None` when none is acceptable.
    fn negotiate(&self, header_values: &[String]) -> Option<(DeflateParams, String)>;

    /// Client side: checks the server's `Sec-WebSocket-Extensions` values against our
    /// [`offer`](Self::offer). `Ok(None)` when the server declined the extension.
    fn accept_response(
        &self,
        header_values: &[String],
    ) -> Result<Option<DeflateParams>, HandshakeError>;

    /// Like [`accept_response`](Self::accept_response), for a client that offered other
    /// extensions besides permessage-deflate: elements named in `others` are left to the
    /// application; any other unoffered extension, or permessage-deflate accepted twice,
    /// fails the handshake.
    fn accept_response_among(
        &self,
        header_values: &[String],
        others: &[&str],
    ) -> Result<Option<DeflateParams>, HandshakeError>;
}

impl DeflateNegotiation for DeflateConfig {
    /// The `Sec-WebSocket-Extensions` value a client sends. It always offers
    /// `client_max_window_bits`, as browsers do, so the server may choose our window.
    fn offer(&self) -> String {
        let mut offer = String::from(NAME);
        if self.server_no_context_takeover {
            offer.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            offer.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < 15 {
            offer.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits.max(9)
            ));
        }
        if self.client_max_window_bits < 15 {
            offer.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_max_window_bits.max(9)
            ));
        } else {
            offer.push_str("; client_max_window_bits");
        }
        offer
    }

    /// Server side: picks the first acceptable permessage-deflate offer among the
    /// client's `Sec-WebSocket-Extensions` values, and returns the negotiated parameters
    /// with the response header value. Offers with unknown, duplicated or invalid
    /// parameters are declined (RFC 7692 section 5); `None` when none is acceptable.
    fn negotiate(&self, header_values: &[String]) -> Option<(DeflateParams, String)> {
        let elements = parse_elements(header_values).unwrap_or_default();
        elements
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(NAME))
            .find_map(|e| parse_params(&e.params).ok())
            .map(|offer| accept_offer(self, &offer))
    }
    /// Client side: checks the server's `Sec-WebSocket-Extensions` values against our
    /// [`offer`](Self::offer). `Ok(None)` when the server declined the extension.
    fn accept_response(
        &self,
        header_values: &[String],
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        self.accept_response_among(header_values, &[])
    }

    /// Like [`accept_response`](Self::accept_response), for a client that offered other
    /// extensions besides permessage-deflate: elements named in `others` are left to the
    /// application; any other unoffered extension, or permessage-deflate accepted twice,
    /// fails the handshake.
    fn accept_response_among(
        &self,
        header_values: &[String],
        others: &[&str],
    ) -> Result<Option<DeflateParams>, HandshakeError> {
        let invalid = |why: &str| HandshakeError::InvalidExtension(why.to_owned());
        let elements = parse_elements(header_values)
            .map_err(|_| invalid("unparsable Sec-WebSocket-Extensions"))?;
        let mut ours = None;
        for element in &elements {
            if element.name.eq_ignore_ascii_case(NAME) {
                if ours.replace(element).is_some() {
                    return Err(invalid("permessage-deflate accepted twice"));
                }
            } else if !others.iter().any(|o| o.eq_ignore_ascii_case(&element.name)) {
                return Err(HandshakeError::UnofferedExtension(element.name.clone()));
            }
        }
        let Some(element) = ours else {
            return Ok(None);
        };
        let parsed = parse_params(&element.params).map_err(|why| invalid(&why))?;
        if self.server_no_context_takeover && !parsed.server_no_context_takeover {
            return Err(invalid(
                "server_no_context_takeover was requested but not accepted",
            ));
        }
        let server_bits = match parsed.server_max_window_bits {
            Some(bits)
                if self.server_max_window_bits < 15
                    && bits > self.server_max_window_bits.max(9) =>
            {
                return Err(invalid("server_max_window_bits above the requested value"));
            }
            Some(bits) => bits,
            None if self.server_max_window_bits < 15 => {
                return Err(invalid(
                    "server_max_window_bits was requested but not accepted",
                ));
            }
            None => 15,
        };
        let client_bits = match parsed.client_max_window_bits {
            Some(None) => {
                return Err(invalid(
                    "client_max_window_bits without a value in a response",
                ));
            }
            Some(Some(bits)) if bits > self.client_max_window_bits.max(9) => {
                return Err(invalid("client_max_window_bits above the offered value"));
            }
            Some(Some(bits)) => bits,
            None => self.client_max_window_bits.max(9),
        };
        Ok(Some(DeflateParams {
            server_no_context_takeover: parsed.server_no_context_takeover,
            client_no_context_takeover: parsed.client_no_context_takeover
                || self.client_no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        }))
    }
}

fn accept_offer(policy: &DeflateConfig, offer: &Parsed) -> (DeflateParams, String) {
    let server_bits = offer
        .server_max_window_bits
        .unwrap_or(15)
        .min(policy.server_max_window_bits.max(9));
    let client_bits = match offer.client_max_window_bits {
        Some(value) => value
            .unwrap_or(15)
            .min(policy.client_max_window_bits.max(9)),
        None => 15,
    };
    let params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || policy.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || policy.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    };
    let mut response = String::from(NAME);
    if params.server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    if offer.server_max_window_bits.is_some() || server_bits < 15 {
        response.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    if matches!(offer.client_max_window_bits, Some(Some(_)))
        || (offer.client_max_window_bits.is_some() && client_bits < 15)
    {
        response.push_str(&format!("; client_max_window_bits={client_bits}"));
    }
    (params, response)
}

fn parse_params(params: &[(String, Option<String>)]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    for (name, value) in params {
        let bits = |value: &Option<String>| -> Result<u8, String> {
            let text = value
                .as_deref()
                .ok_or_else(|| format!("{name} needs a value"))?;
            let valid =
                !text.is_empty() && text.len() <= 2 && text.bytes().all(|b| b.is_ascii_digit());
            match text.parse::<u8>() {
                Ok(bits @ 8..=15) if valid => Ok(bits),
                _ => Err(format!("{name}={text} is not 8..15")),
            }
        };
        let duplicate = || format!("{name} appears twice");
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                let flag = if name.eq_ignore_ascii_case("server_no_context_takeover") {
                    &mut parsed.server_no_context_takeover
                } else {
                    &mut parsed.client_no_context_takeover
                };
                if *flag {
                    return Err(duplicate());
                }
                *flag = true;
            }
            "server_max_window_bits" => {
                if parsed.server_max_window_bits.is_some() {
                    return Err(duplicate());
                }
                parsed.server_max_window_bits = Some(bits(value)?);
            }
            "client_max_window_bits" => {
                if parsed.client_max_window_bits.is_some() {
                    return Err(duplicate());
                }
                parsed.client_max_window_bits = Some(match value {
                    None => None,
                    Some(_) => Some(bits(value)?),
                });
            }
            _ => return Err(format!("unknown parameter {name}")),
        }
    }
    Ok(parsed)
}

/// Splits header values into extension elements (RFC 6455 section 9.1 grammar, with
/// quoted-string values).
fn parse_elements(values: &[String]) -> Result<Vec<Element>, ()> {
    let mut elements = Vec::new();
    for value in values {
        for element in split_unquoted(value, ',')? {
            let mut parts = split_unquoted(&element, ';')?.into_iter();
            let name = parts.next().unwrap_or_default().trim().to_owned();
            if name.is_empty() {
                continue;
            }
            if !name.bytes().all(is_token_byte) {
                return Err(());
            }
            let mut params = Vec::new();
            for part in parts {
                let (key, value) = match part.split_once('=') {
                    Some((key, value)) => (key.trim(), Some(unquote(value.trim())?)),
                    None => (part.trim(), None),
                };
                if key.is_empty() || !key.bytes().all(is_token_byte) {
                    return Err(());
                }
                params.push((key.to_owned(), value));
            }
            elements.push(Element { name, params });
        }
    }
    Ok(elements)
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(text: &str, sep: char) -> Result<Vec<String>, ()> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        let current = parts.last_mut().expect("never empty");
        if escaped {
            escaped = false;
            current.push(c);
        } else if quoted && c == '\\' {
            escaped = true;
            current.push(c);
        } else if c == '"' {
            quoted = !quoted;
            current.push(c);
        } else if c == sep && !quoted {
            parts.push(String::new());
        } else {
            current.push(c);
        }
    }
    if quoted { Err(()) } else { Ok(parts) }
}

fn unquote(value: &str) -> Result<String, ()> {
    let Some(inner) = value.strip_prefix('"') else {
        return if value.bytes().all(is_token_byte) {
            Ok(value.to_owned())
        } else {
            Err(())
        };
    };
    let inner = inner.strip_suffix('"').ok_or(())?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().ok_or(())?
        } else {
            c
        });
    }
    Ok(out)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Vec<String> {
        vec![value.to_owned()]
    }

    #[test]
    fn accepts_a_browser_offer_with_defaults() {
        let (params, header) = DeflateConfig::default()
            .negotiate(&offer("permessage-deflate; client_max_window_bits"))
            .unwrap();
        assert_eq!(params, DeflateParams::default());
        assert_eq!(header, "permessage-deflate");
    }

    #[test]
    fn echoes_requested_server_parameters() {
        let (params, header) = DeflateConfig::default()
            .negotiate(&offer(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            ))
            .unwrap();
        assert!(params.server_no_context_takeover);
        assert_eq!(params.server_max_window_bits, 10);
        assert_eq!(
            header,
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
    }

    #[test]
    fn server_policy_limits_the_client_window_only_when_offered() {
        let policy = DeflateConfig {
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        };
        let (params, header) = policy
            .negotiate(&offer("permessage-deflate; client_max_window_bits"))
            .unwrap();
        assert_eq!(
            (params.client_max_window_bits, header.as_str()),
            (10, "permessage-deflate; client_max_window_bits=10")
        );
        let (params, header) = policy.negotiate(&offer("permessage-deflate")).unwrap();
        assert_eq!(
            (params.client_max_window_bits, header.as_str()),
            (15, "permessage-deflate")
        );
    }

    #[test]
    fn declines_offers_with_unknown_duplicate_or_invalid_parameters_and_takes_the_next() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert_eq!(
                DeflateConfig::default().negotiate(&offer(bad)),
                None,
                "{bad}"
            );
            let with_fallback = offer(&format!(
                "{bad}, permessage-deflate; server_max_window_bits=12"
            ));
            let (params, _) = DeflateConfig::default()
                .negotiate(&with_fallback)
                .expect(bad);
            assert_eq!(params.server_max_window_bits, 12);
        }
    }

    #[test]
    fn quoted_values_are_accepted() {
        let (params, _) = DeflateConfig::default()
            .negotiate(&offer(
                "x-other; a=\"b,c\", permessage-deflate; client_max_window_bits=\"12\"",
            ))
            .unwrap();
        assert_eq!(params.client_max_window_bits, 12);
    }

    #[test]
    fn client_offer_and_response_validation() {
        let policy = DeflateConfig {
            server_max_window_bits: 12,
            ..DeflateConfig::default()
        };
        assert_eq!(
            policy.offer(),
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits"
        );
        let ok = policy
            .accept_response(&offer(
                "permessage-deflate; server_max_window_bits=11; client_max_window_bits=9",
            ))
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.server_max_window_bits, ok.client_max_window_bits),
            (11, 9)
        );
        for bad in [
            "permessage-deflate",                            // smwb requested, not echoed
            "permessage-deflate; server_max_window_bits=13", // above the request
            "permessage-deflate; server_max_window_bits=12; bogus", // unknown
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits", // no value
            "permessage-deflate; server_max_window_bits=12, permessage-deflate", // two
        ] {
            assert!(policy.accept_response(&offer(bad)).is_err(), "{bad}");
        }
        assert_eq!(DeflateConfig::default().accept_response(&[]), Ok(None));
        assert!(matches!(
            DeflateConfig::default().accept_response(&offer("x-unknown")),
            Err(HandshakeError::UnofferedExtension(_))
        ));
    }

    #[test]
    fn a_window_of_8_requested_by_the_peer_is_agreed() {
        let (params, header) = DeflateConfig::default()
            .negotiate(&offer("permessage-deflate; server_max_window_bits=8"))
            .unwrap();
        assert_eq!(params.server_max_window_bits, 8);
        assert_eq!(header, "permessage-deflate; server_max_window_bits=8");
    }
}
