//! The fuzzing server that tests WebSocket clients, speaking the Autobahn
//! client protocol: `/getCaseCount`, `/getCaseInfo?case=N`,
//! `/runCase?case=N&agent=A`, `/getCaseStatus?case=N&agent=A` and
//! `/updateReports?agent=A`. Cases are numbered 1..=N in catalogue order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::cases::{Case, CaseKind};
use super::deflate;
use super::handshake;
use super::runner::{self, CaseResult};
use super::session::{Role, Session};
use wire_kit::{FrameSpec, OP_TEXT};

/// Results by agent, then by case id.
pub type Results = BTreeMap<String, BTreeMap<String, CaseResult>>;

/// Shared state of a running fuzzing server.
pub struct FuzzServer {
    /// The cases offered, in order.
    pub cases: Arc<Vec<Case>>,
    /// Results collected so far.
    pub results: Mutex<Results>,
    /// Signalled on every `/updateReports`.
    pub updated: Notify,
    /// Agents that called `/updateReports`.
    pub reported: Mutex<Vec<String>>,
    /// `/runCase` connections still being judged.
    pub running: AtomicUsize,
}

impl FuzzServer {
    /// Waits (at most `max`) until no `/runCase` is being judged, so that a
    /// client that dropped a case and moved on gets that case recorded.
    pub async fn settle(&self, max: Duration) {
        let until = Instant::now() + max;
        while self.running.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the results of one agent out.
    pub fn take_agent(&self, agent: &str) -> BTreeMap<String, CaseResult> {
        self.results
            .lock()
            .map(|mut r| r.remove(agent).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Binds and starts serving in the background.
pub async fn start(addr: &str, cases: Vec<Case>) -> Result<(SocketAddr, Arc<FuzzServer>), String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("binding fuzzing server to {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let srv = Arc::new(FuzzServer {
        cases: Arc::new(cases),
        results: Mutex::new(BTreeMap::new()),
        updated: Notify::new(),
        reported: Mutex::new(Vec::new()),
        running: AtomicUsize::new(0),
    });
    let s2 = srv.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle(stream, s2.clone()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    Ok((local, srv))
}

async fn reply_and_close(mut s: Session, text: String) {
    s.send_frame(&FrameSpec::new(OP_TEXT, text.into_bytes()), 0, false);
    s.send_close(Some(1000), b"");
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.next_event(deadline).await.is_some() {}
    s.kill("done");
}

fn case_index(srv: &FuzzServer, req: &handshake::Request) -> Option<usize> {
    let n: usize = req.param("case")?.parse().ok()?;
    (1..=srv.cases.len()).contains(&n).then(|| n - 1)
}

async fn handle(mut stream: TcpStream, srv: Arc<FuzzServer>) {
    let started = Instant::now();
    // Compression cases answer the client's permessage-deflate offers with
    // the case's accept rule; everything else declines all extensions.
    let mut agreed = None;
    let answer = |req: &handshake::Request, offered: Option<&str>| {
        if req.path != "/runCase" {
            return None;
        }
        let CaseKind::Compressed(c) = &srv.cases[case_index(&srv, req)?].kind else {
            return None;
        };
        let offers: Vec<deflate::Offer> = deflate::parse_offers(offered?)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        let a = c.accept.accept(&offers)?;
        agreed = Some(a);
        Some(a.header())
    };
    let Ok(up) = handshake::server(&mut stream, Duration::from_secs(5), answer).await else {
        return;
    };
    let req = up.request;
    let mut s = Session::new(stream, Role::Server, up.early, started);
    if let Some(a) = agreed {
        s.enable_deflate(a);
    }
    let agent = req.param("agent").unwrap_or("unknown").to_string();
    match req.path.as_str() {
        "/getCaseCount" => reply_and_close(s, srv.cases.len().to_string()).await,
        "/getCaseInfo" => {
            let info = case_index(&srv, &req).map(|i| {
                let c = &srv.cases[i];
                serde_json::json!({"id": c.id, "description": c.description})
            });
            reply_and_close(s, info.unwrap_or(serde_json::Value::Null).to_string()).await
        }
        "/getCaseStatus" => {
            let status = case_index(&srv, &req).and_then(|i| {
                let id = &srv.cases[i].id;
                let r = srv.results.lock().ok()?;
                r.get(&agent)?
                    .get(id)
                    .map(|c| c.behavior.label().to_string())
            });
            let v = serde_json::json!({"behavior": status.unwrap_or_else(|| "UNKNOWN".into())});
            reply_and_close(s, v.to_string()).await
        }
        "/runCase" => {
            let Some(i) = case_index(&srv, &req) else {
                s.send_close(Some(1008), b"unknown case");
                let _ = s.next_event(Instant::now() + Duration::from_secs(1)).await;
                return;
            };
            let case = &srv.cases[i];
            srv.running.fetch_add(1, Ordering::SeqCst);
            let mut res = runner::run_on_session(&mut s, case, Role::Server, started, false).await;
            res.offered_extensions = up.offered;
            res.negotiated_extensions = up.accepted;
            if let Ok(mut r) = srv.results.lock() {
                r.entry(agent).or_default().insert(case.id.clone(), res);
            }
            srv.running.fetch_sub(1, Ordering::SeqCst);
        }
        "/updateReports" => {
            if let Ok(mut r) = srv.reported.lock() {
                r.push(agent);
            }
            s.send_close(Some(1000), b"");
            while s
                .next_event(Instant::now() + Duration::from_secs(1))
                .await
                .is_some()
            {}
            srv.settle(Duration::from_secs(15)).await;
            srv.updated.notify_waiters();
        }
        _ => {
            s.send_close(Some(1008), b"unknown path");
            let _ = s.next_event(Instant::now() + Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::cases;
    use crate::conformance::handshake::WsUrl;
    use crate::conformance::verdict::Behavior;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wire_kit::{self as frame, FrameReader, OP_CLOSE, OP_PING, OP_PONG};

    /// A minimal echo client driven by the Autobahn client protocol.
    async fn client_conn(url: &WsUrl, path: &str) -> Option<String> {
        let mut st = TcpStream::connect(url.addr()).await.ok()?;
        let u = url.with_path(path);
        let (early, _) = handshake::client(&mut st, &u, [7; 16], Duration::from_secs(2), None)
            .await
            .ok()?;
        let mut r = FrameReader::new(1 << 26);
        r.push(&early);
        let mut buf = vec![0u8; 65536];
        let mut text = None;
        let mut msg: Vec<u8> = Vec::new();
        let mut msg_op = 0;
        loop {
            while let Ok(Some(f)) = r.next_frame() {
                let reply = match f.opcode {
                    OP_PING => Some(FrameSpec::new(OP_PONG, f.payload.clone())),
                    OP_CLOSE => Some(FrameSpec::new(OP_CLOSE, f.payload.clone())),
                    0..=2 => {
                        if f.opcode != 0 {
                            msg_op = f.opcode;
                            msg.clear();
                        }
                        msg.extend_from_slice(&f.payload);
                        if f.fin {
                            text = Some(String::from_utf8_lossy(&msg).into_owned());
                            Some(FrameSpec::new(msg_op, msg.clone()))
                        } else {
                            None
                        }
                    }
                    _ => None,
                };
                if let Some(rep) = reply {
                    let close = rep.opcode == OP_CLOSE;
                    let _ = st.write_all(&rep.masked(Some([1, 2, 3, 4])).encode()).await;
                    if close {
                        // Wait for the server to close TCP.
                        let _ =
                            tokio::time::timeout(Duration::from_secs(2), st.read(&mut buf)).await;
                        return text;
                    }
                }
            }
            match tokio::time::timeout(Duration::from_secs(5), st.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => r.push(&buf[..n]),
                _ => return text,
            }
        }
    }

    #[tokio::test]
    async fn serves_the_autobahn_client_protocol() {
        let sel: Vec<Case> = cases::all()
            .into_iter()
            .filter(|c| cases::selected("1.1.1,1.2.2,2.2,12.1.1", &c.id))
            .collect();
        let (addr, srv) = start("127.0.0.1:0", sel).await.unwrap();
        let url = WsUrl::parse(&format!("ws://{addr}")).unwrap();
        let n: usize = client_conn(&url, "/getCaseCount")
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n, 4);
        for i in 1..=n {
            client_conn(&url, &format!("/runCase?case={i}&agent=test")).await;
        }
        client_conn(&url, "/updateReports?agent=test").await;
        let res = srv.take_agent("test");
        assert_eq!(res.len(), 4);
        for id in ["1.1.1", "1.2.2", "2.2"] {
            assert_eq!(res[id].behavior, Behavior::Ok, "{id}: {:#?}", res[id]);
        }
        assert_eq!(res["12.1.1"].behavior, Behavior::Unimplemented);
        assert_eq!(srv.reported.lock().unwrap().as_slice(), ["test"]);
        let _ = frame::OP_TEXT;
    }
}
