//! The TLS path: a wss:// server on 127.0.0.1 with a self-signed certificate (made here with
//! rcgen) that the feed trusts explicitly through `tls_ca_file`. The Binance collector connects
//! over TLS, subscribes, and its trades reach a subscriber. Without that trust the handshake is
//! refused and nothing is relayed.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use mdrelay::wire::protocol::Message;
use mdrelay::{relay::client::RelayClient, run};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tungstenite::Message as WsMessage;

use crate::util;

const TRADE: &str = r#"{"stream":"ethusdt@trade","data":{"e":"trade","E":1,"s":"ETHUSDT","t":TID,"p":"2683.80000000","q":"0.00200000","T":1723161255611,"m":true,"M":true}}"#;

/// A one-connection wss server speaking just enough Binance: ack the SUBSCRIBE, send 3 trades,
/// then wait for the client to leave. Returns (port, server thread).
fn wss_server(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (u16, thread::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        // Several attempts may come (the untrusted client retries); serve each until one subscribes.
        for _ in 0..20 {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let tls = rustls::StreamOwned::new(conn, tcp);
            let Ok(mut ws) = tungstenite::accept(tls) else {
                continue;
            };
            let Ok(WsMessage::Text(req)) = ws.read() else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(req.as_str()).unwrap();
            assert_eq!(v["method"], "SUBSCRIBE");
            ws.send(WsMessage::text(format!(
                r#"{{"result":null,"id":{}}}"#,
                v["id"]
            )))
            .unwrap();
            for tid in 1..=3 {
                ws.send(WsMessage::text(TRADE.replace("TID", &tid.to_string())))
                    .unwrap();
            }
            while ws.read().is_ok() {}
            return;
        }
    });
    (port, h)
}

fn relay_sets(sock: &std::path::Path, port: u16, ca: Option<&std::path::Path>) -> Vec<String> {
    let mut sets = vec![
        "replay.enabled=false".to_owned(),
        "http.listen=\"127.0.0.1:0\"".into(),
        "consumer.idle=\"park\"".into(),
        format!("relay.socket_path={:?}", sock.display().to_string()),
        format!("feeds.binance.url=\"wss://localhost:{port}/stream\""),
        "feeds.binance.channels=[\"trade\"]".into(),
        "feeds.coinbase.enabled=false".into(),
        "feeds.kraken_v1.enabled=false".into(),
        "feeds.binance_usdm.enabled=false".into(),
    ];
    if let Some(ca) = ca {
        sets.push(format!(
            "feeds.binance.tls_ca_file={:?}",
            ca.display().to_string()
        ));
    }
    sets
}

fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = ck.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (ck.cert.der().clone(), key, pem)
}

#[test]
fn wss_with_an_explicitly_trusted_self_signed_certificate() {
    let _wd = util::Watchdog::new("tls", 60);
    let (cert, key, pem) = self_signed();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::File::create(&ca)
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let (port, server) = wss_server(cert, key);
    let (_sdir, sock) = util::temp_socket();
    let relay = run::start(util::config(&relay_sets(&sock, port, Some(&ca)))).unwrap();
    let mut client = RelayClient::connect(&sock).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let rx = client.next_frame().unwrap().expect("stream open");
        if let Message::Trade(t) = rx.frame.message().unwrap() {
            ids.push(t.trade_id.unwrap());
        }
    }
    assert_eq!(ids, [1, 2, 3]);
    let summary = relay.shutdown();
    assert_eq!(summary.feeds[0].events, 3);
    server.join().unwrap();
}

#[test]
fn wss_without_trust_is_refused() {
    let _wd = util::Watchdog::new("tls_untrusted", 60);
    let (cert, key, _pem) = self_signed();
    let (port, _server) = wss_server(cert, key);
    let (_sdir, sock) = util::temp_socket();
    // No tls_ca_file: the web PKI roots do not know this certificate.
    let relay = run::start(util::config(&relay_sets(&sock, port, None))).unwrap();
    let stats = relay.feed_stats(0).unwrap();
    assert!(util::wait_until(Duration::from_secs(20), || stats
        .collector
        .reconnects
        .get()
        >= 2));
    assert_eq!(stats.collector.connects.get(), 0, "never connected");
    let summary = relay.shutdown();
    assert_eq!(summary.feeds[0].events, 0);
}

#[test]
fn an_unusable_trust_file_fails_start_up_naming_the_key() {
    let (_sdir, sock) = util::temp_socket();
    let err = run::start(util::config(&relay_sets(
        &sock,
        1,
        Some(std::path::Path::new("/nonexistent/ca.pem")),
    )))
    .err()
    .expect("start refused");
    assert!(
        err.to_string().contains("feeds.binance.tls_ca_file"),
        "{err}"
    );
}
