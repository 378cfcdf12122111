//! Layering: built-in defaults < TOML file < environment overlay file < `MDRELAY__…`
//! environment variables < `--set` flags, merged as TOML trees before anything is validated.
//! An override sets one key to a one-line TOML value; a line break in it is refused.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::{invalid, is_bare, ConfigError};
use super::DEFAULT_TOML;

/// Where configuration comes from.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The TOML file (`--config`); `None` = built-in defaults only.
    pub file: Option<PathBuf>,
    /// Environment overlay name (`--env`); its file is `environments/NAME.toml` beside `file`
    /// (or under `config/` for the built-in defaults).
    pub env_name: Option<String>,
    /// `MDRELAY__…` variables as (name, value).
    pub env_vars: Vec<(String, String)>,
    /// `--set key=value` flags, in order.
    pub sets: Vec<String>,
}

impl Sources {
    /// Sources from the process environment plus the given file, overlay and flags.
    pub fn from_process(
        file: Option<PathBuf>,
        env_name: Option<String>,
        sets: Vec<String>,
    ) -> Self {
        Sources {
            file,
            env_name: env_name.or_else(|| std::env::var("MDRELAY_ENV").ok()),
            env_vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("MDRELAY__"))
                .collect(),
            sets,
        }
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        })
}

/// The built-in defaults as a tree, parsed once per process: every [`super::load`] after the
/// first clones it instead of parsing 27 KB of commented TOML again (tests and the
/// `config_loader` fuzz target load thousands of configurations).
fn builtin_table() -> Result<toml::Table, ConfigError> {
    static BUILTIN: OnceLock<Result<toml::Table, String>> = OnceLock::new();
    BUILTIN
        .get_or_init(|| {
            DEFAULT_TOML
                .parse::<toml::Table>()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|message| ConfigError::Syntax {
            path: "built-in defaults".to_owned(),
            message,
        })
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse_toml(&text, &path.display().to_string())
}

/// Deep-merges `over` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Parses an override value as TOML (`42`, `true`, `["a","b"]`, `"x"`); bare words are strings.
fn override_value(text: &str) -> toml::Value {
    match format!("v = {text}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

/// `text` when it is one line: after a line break the TOML parser would read the rest as keys
/// of its own and drop them without a word, so a line break is refused naming the key (`via`:
/// the `--set` flag or the environment variable that gave the value).
fn one_line<'t>(key: &[String], text: &'t str, via: &str) -> Result<&'t str, ConfigError> {
    if text.contains(['\n', '\r']) {
        return Err(invalid(
            key.join("."),
            format!(
                "the value from {via} holds a line break: an override sets one key to a one-line \
                 TOML value (a newline inside a string is written \\n)"
            ),
        ));
    }
    Ok(text)
}

/// Sets `path` (`a.b.c`) to `value` in `root`, creating tables on the way.
fn set_path(
    root: &mut toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), ConfigError> {
    let Some((last, parents)) = path.split_last() else {
        return Err(ConfigError::BadOverride(String::new()));
    };
    let mut t = root;
    for (i, p) in parents.iter().enumerate() {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| {
            invalid(
                path[..=i].join("."),
                "is a value, not a section; cannot set a key under it",
            )
        })?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Builds the merged TOML tree from every source.
pub fn merged_table(src: &Sources) -> Result<toml::Table, ConfigError> {
    let mut root = builtin_table()?;
    // The built-in defaults define one demo feed; a user's file that defines `feeds` replaces them.
    if let Some(file) = &src.file {
        let user = read_toml(file)?;
        if user.contains_key("feeds") {
            root.remove("feeds");
        }
        merge(&mut root, user);
    }
    if let Some(env) = &src.env_name {
        if !is_bare(env) {
            return Err(invalid(
                "env",
                format!("`{env}` is not a plain environment name"),
            ));
        }
        let dir = src
            .file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("config"));
        merge(
            &mut root,
            read_toml(&dir.join("environments").join(format!("{env}.toml")))?,
        );
    }
    for (k, v) in &src.env_vars {
        let Some(rest) = k.strip_prefix("MDRELAY__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::BadOverride(k.clone()));
        }
        set_path(&mut root, &path, override_value(one_line(&path, v, k)?))?;
    }
    for s in &src.sets {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| ConfigError::BadOverride(s.clone()))?;
        let path: Vec<String> = k.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::BadOverride(s.clone()));
        }
        set_path(
            &mut root,
            &path,
            override_value(one_line(&path, v, "--set")?.trim()),
        )?;
    }
    Ok(root)
}
