//! The NATS client's options, checked before any thread starts: server addresses, credentials,
//! TLS files, the reconnect backoff, and the connection events that drive the publisher's
//! `connects`/`connected` counters.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};

use super::{BridgeError, Shared};
use crate::base::backoff::Backoff;
use crate::bridge::config::{redact_url, NatsConfig};

/// The configured server addresses; an unusable URL is an error (shown redacted).
pub(super) fn server_addrs(cfg: &NatsConfig) -> Result<Vec<ServerAddr>, BridgeError> {
    cfg.urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>().map_err(|e| BridgeError::Url {
                url: redact_url(u),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// The wait async-nats makes before its connect attempt number `attempts` (it counts from 1;
/// the first is immediate): [`Backoff::before_attempt`].
fn reconnect_delay(backoff: Backoff, attempts: usize) -> Duration {
    backoff.before_attempt(u64::try_from(attempts).unwrap_or(u64::MAX))
}

fn check_file(key: &'static str, p: &Option<PathBuf>) -> Result<(), BridgeError> {
    if let Some(path) = p {
        std::fs::File::open(path).map_err(|e| BridgeError::File {
            key,
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

pub(super) fn connect_options(
    cfg: &NatsConfig,
    backoff: Backoff,
    shared: &Arc<Shared>,
) -> Result<ConnectOptions, BridgeError> {
    check_file("nats.tls_ca_file", &cfg.tls_ca_file)?;
    check_file("nats.tls_cert_file", &cfg.tls_cert_file)?;
    check_file("nats.tls_key_file", &cfg.tls_key_file)?;
    let mut opts = match &cfg.credentials_file {
        Some(path) => {
            let file_err = |reason: String| BridgeError::File {
                key: "nats.credentials_file",
                path: path.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
            // The parser's message names what is malformed, never the secret itself.
            ConnectOptions::with_credentials(&text)
                .map_err(|e| file_err(format!("not a NATS credentials file ({})", e.kind())))?
        }
        None => ConnectOptions::new(),
    };
    if let Some(ca) = &cfg.tls_ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let sh = shared.clone();
    Ok(opts
        .require_tls(cfg.tls_required())
        .name("mdrelay-nats-bridge")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(move |attempts| reconnect_delay(backoff, attempts))
        .event_callback(move |ev| {
            let sh = sh.clone();
            async move {
                let c = &sh.counters.publisher;
                match ev {
                    async_nats::Event::Connected => {
                        c.connects.inc();
                        c.connected.set(1);
                        tracing::info!("nats bridge: connected to NATS");
                    }
                    async_nats::Event::Disconnected => {
                        c.disconnects.inc();
                        c.connected.set(0);
                        tracing::warn!("nats bridge: disconnected from NATS; reconnecting");
                    }
                    other => tracing::warn!(event = %other, "nats bridge: NATS client event"),
                }
            }
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_immediate_then_doubles_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        let b = Backoff { initial: i, max: m };
        let d: Vec<u64> = (0..7)
            .map(|a| reconnect_delay(b, a).as_millis() as u64)
            .collect();
        assert_eq!(d, [0, 0, 100, 200, 400, 800, 1000]);
        assert_eq!(reconnect_delay(b, usize::MAX), m);
    }
}
