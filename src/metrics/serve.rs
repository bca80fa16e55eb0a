//! `zfw metrics --listen ADDR:PORT`: serve `GET /metrics` over HTTP with
//! the `tiny_http` crate (a small, synchronous server: one scrape at a
//! time is all Prometheus needs, and it pulls in no async runtime).
//! Read-only: every other path is 404, every other method 405.  Each
//! scrape opens the pinned maps afresh, so a `zfw load` after an `unload`
//! is picked up; while nothing is loaded a scrape gets 503 and one line.

use std::net::SocketAddr;

use tiny_http::{Header, Method, Response, Server};

use crate::bpffs::Root;
use crate::error::{Error, Result};
use crate::maps::Maps;

/// Where `--listen` without a value binds (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9475";

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `--listen`'s value as a socket address, or a one-line usage error.
pub fn parse_listen(s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        let shown: String = s.chars().take(64).collect();
        Error::usage(format!(
            "--listen '{}': expected ADDR:PORT, e.g. {DEFAULT_LISTEN} or [::1]:9475",
            shown.escape_debug()
        ))
    })
}

fn text(code: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body).with_status_code(code)
}

/// Serve until the process is stopped.  `ready` is called once the socket
/// is bound (the CLI prints where).
pub fn serve(
    root: &Root,
    addr: SocketAddr,
    series: &super::RuleSeries,
    ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let server = Server::http(addr)
        .map_err(|e| Error::runtime(format!("--listen {addr}: cannot listen: {e}")))?;
    let bound = server.server_addr().to_ip().unwrap_or(addr);
    ready(bound);
    for req in server.incoming_requests() {
        let path = req.url().split('?').next().unwrap_or("");
        let resp = match (req.method(), path) {
            (Method::Get, "/metrics") => {
                match Maps::open(root).and_then(|m| super::exposition(&m, series)) {
                    Ok(body) => {
                        let ct = Header::from_bytes("Content-Type", CONTENT_TYPE)
                            .map_err(|_| Error::runtime("content type header"))?;
                        text(200, body).with_header(ct)
                    }
                    Err(e) => text(503, format!("{e}\n")),
                }
            }
            (Method::Get, _) => text(404, "only /metrics is served\n".into()),
            _ => text(405, "read-only: GET /metrics\n".into()),
        };
        // a scraper that hung up is its own problem, not the server's
        let _ = req.respond(resp);
    }
    Ok(())
}
