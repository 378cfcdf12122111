//! `mdrelay check-config`: loads the configuration exactly as `mdrelay run` does, runs the same
//! start-up checks ([`config::preflight`]: socket path and directory, CSV and recording
//! directories, TLS and NATS files; nothing is created), and prints the effective merged
//! configuration — defaults included — as TOML on stdout, with the passwords of URLs redacted
//! (`nats://***@host`). That output, given back with `--config`, is the same configuration.
//! Exits 0 when valid; an invalid configuration is a [`config::ConfigError`] naming the key
//! (exit 2).

use std::process::ExitCode;

use tracing::Level;

use super::args::{sources, ConfigArgs};
use super::log;
use crate::bridge::config::redact_url;
use crate::config;

/// `mdrelay check-config`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let src = sources(args);
    let cfg = config::load(&src)?;
    log::init(&cfg.log);
    config::preflight(&cfg)?;
    let mut table = config::merged_table(&src)?;
    redact(&mut table);
    let text = toml::to_string(&table)?;
    print!(
        "# mdrelay check-config: the effective configuration (built-in defaults included);\n\
         # passwords in URLs are shown as ***.\n\n{text}"
    );
    log::line(Level::INFO, "mdrelay: configuration is valid");
    Ok(ExitCode::SUCCESS)
}

/// Replaces `user:password@` in every URL key (`nats.url`, a feed's `url` and `rest_url`) with
/// `***@`; credentials and key files are paths, shown as they are.
fn redact(table: &mut toml::Table) {
    fn redact_list(v: &mut toml::Value) {
        if let toml::Value::String(s) = v {
            *s = s.split(',').map(redact_url).collect::<Vec<_>>().join(",");
        }
    }
    if let Some(url) = table
        .get_mut("nats")
        .and_then(toml::Value::as_table_mut)
        .and_then(|n| n.get_mut("url"))
    {
        redact_list(url);
    }
    if let Some(feeds) = table.get_mut("feeds").and_then(toml::Value::as_table_mut) {
        for (_, feed) in feeds.iter_mut() {
            for key in ["url", "rest_url"] {
                if let Some(toml::Value::String(s)) = feed.get_mut(key) {
                    *s = redact_url(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_and_nothing_else() {
        let mut t: toml::Table = r#"
            [nats]
            url = "nats://a:secret@h1:4222, nats://h2:4222"
            credentials_file = "/etc/mdrelay/nats.creds"
            [feeds.x]
            url = "wss://u:pw@venue/ws"
            rest_url = "https://venue"
        "#
        .parse()
        .unwrap();
        redact(&mut t);
        let text = toml::to_string(&t).unwrap();
        assert!(!text.contains("secret") && !text.contains("pw@"), "{text}");
        assert_eq!(
            t["nats"]["url"].as_str(),
            Some("nats://***@h1:4222, nats://h2:4222")
        );
        assert_eq!(t["feeds"]["x"]["url"].as_str(), Some("wss://***@venue/ws"));
        assert_eq!(t["feeds"]["x"]["rest_url"].as_str(), Some("https://venue"));
        assert_eq!(
            t["nats"]["credentials_file"].as_str(),
            Some("/etc/mdrelay/nats.creds")
        );
    }
}
