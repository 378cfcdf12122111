//! Reading the Prometheus text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>), the format
//! [`metrics`](super::metrics) writes. One line grammar — a blank line, `# HELP name doc`,
//! `# TYPE name kind`, another comment, or a sample `name{label="value",…} value [timestamp]`
//! with label values unescaped (`\\`, `\"`, `\n`) — read two ways:
//!
//! - [`read_samples`]: the values, skipping every line the grammar rejects. For a client that
//!   shows what it can rather than fail a scrape (`mdrelay top`).
//! - [`parse_exposition`]: the whole text checked against the rules a scraper relies on, failing
//!   at the first line that breaks one. For the tests of `/metrics`.
//!
//! Pure functions of a `&str`: no I/O, no thread, no lock.

use std::collections::{HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`mdrelay_queue_depth_frames`, `…_sum`); a valid metric name.
    pub name: String,
    /// Labels in line order, values unescaped; no label name twice.
    pub labels: Vec<(String, String)>,
    /// Value; NaN and ±Inf as written.
    pub value: f64,
}

impl Sample {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a text is not valid exposition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}: {text:?}")]
pub struct ExpositionError {
    /// The line that breaks a rule, from 1.
    pub line: usize,
    /// The rule it breaks.
    pub what: String,
    /// The line itself.
    pub text: String,
}

/// Label name and unescaped value pairs, in line order.
type Labels = Vec<(String, String)>;

/// Blank characters between the tokens of a line.
const BLANK: [char; 2] = [' ', '\t'];

/// One line, as the grammar reads it.
#[derive(Debug)]
enum Line<'a> {
    /// A blank line, or a comment other than HELP and TYPE.
    Skip,
    /// `# HELP name doc`.
    Help { name: &'a str },
    /// `# TYPE name kind`; `kind` is one of the five types.
    Type { name: &'a str, kind: &'a str },
    /// A sample; `timestamp` when one followed the value.
    Sample { sample: Sample, timestamp: bool },
}

fn valid_metric_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}")),
        _ => Err(format!("bad value {s:?}")),
    }
}

/// Reads one line (without its newline).
fn read_line(line: &str) -> Result<Line<'_>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Line::Skip);
    }
    let Some(comment) = line.strip_prefix('#') else {
        let (sample, timestamp) = read_sample(line)?;
        return Ok(Line::Sample { sample, timestamp });
    };
    let mut parts = comment.trim_start().splitn(3, ' ');
    match parts.next() {
        Some("HELP") => {
            let name = parts.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err("bad HELP name".into());
            }
            let mut cs = parts.next().unwrap_or("").chars();
            while let Some(c) = cs.next() {
                if c == '\\' && !matches!(cs.next(), Some('\\' | 'n')) {
                    return Err("bad escape in HELP".into());
                }
            }
            Ok(Line::Help { name })
        }
        Some("TYPE") => {
            let name = parts.next().unwrap_or("");
            let kind = parts.next().unwrap_or("");
            if !valid_metric_name(name) {
                return Err("bad TYPE name".into());
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err("bad TYPE".into());
            }
            Ok(Line::Type { name, kind })
        }
        _ => Ok(Line::Skip),
    }
}

/// Reads a sample line: name, optional `{labels}`, blanks, value, optional timestamp.
fn read_sample(line: &str) -> Result<(Sample, bool), String> {
    let name_end = line
        .find(|c| c == '{' || BLANK.contains(&c))
        .ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err("bad metric name".into());
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(body) => read_labels(body)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let after = rest.trim_start_matches(BLANK);
    if after.len() == rest.len() {
        return Err("no space before value".into());
    }
    let mut tokens = after.split(BLANK).filter(|t| !t.is_empty());
    let value = parse_value(tokens.next().ok_or("no value")?)?;
    let timestamp = match tokens.next() {
        None => false,
        Some(t) => {
            t.parse::<i64>()
                .map_err(|_| format!("bad timestamp {t:?}"))?;
            true
        }
    };
    if tokens.next().is_some() {
        return Err("junk after the timestamp".into());
    }
    let sample = Sample {
        name: name.to_owned(),
        labels,
        value,
    };
    Ok((sample, timestamp))
}

/// Reads `a="x",b="y"}` (after the `{`) into pairs, strict about escapes; returns them and the
/// text after the `}`.
fn read_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut out: Labels = Vec::new();
    let mut rest = s.trim_start_matches(BLANK);
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((out, after));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("no '=' in {rest:?}"))?;
        let name = rest[..eq].trim_end_matches(BLANK);
        if !valid_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        let body = rest[eq + 1..]
            .trim_start_matches(BLANK)
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name} value not quoted"))?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of {name}")),
                Some((i, '"')) => break i + 1,
                Some((_, '\\')) => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in {name}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label {name}"));
        }
        out.push((name.to_owned(), value));
        rest = body[end..].trim_start_matches(BLANK);
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start_matches(BLANK);
        } else if !rest.starts_with('}') {
            return Err(format!("junk after label {name}: {rest:?}"));
        }
    }
}

/// One sample line; `None` for blank lines, comments and lines the grammar rejects.
fn parse_sample(line: &str) -> Option<Sample> {
    match read_line(line) {
        Ok(Line::Sample { sample, .. }) => Some(sample),
        _ => None,
    }
}

/// The samples of `text` whose name `keep` accepts, in order. Lines the grammar rejects are
/// skipped, and so is every rule beyond one line (TYPE before samples, grouping, duplicates).
pub fn read_samples(text: &str, keep: impl Fn(&str) -> bool) -> Vec<Sample> {
    text.lines()
        .filter(|l| {
            let l = l.trim_start();
            let name_end = l.find(|c| c == '{' || BLANK.contains(&c));
            keep(&l[..name_end.unwrap_or(l.len())])
        })
        .filter_map(parse_sample)
        .collect()
}

/// Parses `text` and checks the rules of the 0.0.4 format that a scraper relies on: every line
/// is blank, a comment, or a sample the grammar reads; HELP and TYPE at most once per family,
/// TYPE before the family's first sample; a family's samples form one group; no series twice;
/// summaries' quantile labels. Also what mdrelay's own output keeps to: every sample has a HELP,
/// counters end in `_total`, no timestamps.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ExpositionError> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(ExpositionError {
            line: text.lines().count(),
            what: "last line must end with a newline".into(),
            text: text.lines().last().unwrap_or("").to_owned(),
        });
    }
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |what: String| ExpositionError {
            line: n + 1,
            what,
            text: line.to_owned(),
        };
        let (name, labels, value) = match read_line(line).map_err(err)? {
            Line::Skip => continue,
            Line::Help { name } => {
                if !helps.insert(name.to_owned()) {
                    return Err(err("second HELP".into()));
                }
                continue;
            }
            Line::Type { name, kind } => {
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(err("counter name without _total".into()));
                }
                if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(err("second TYPE".into()));
                }
                if finished.contains(name) || current.as_deref() == Some(name) {
                    return Err(err("TYPE after the family's samples".into()));
                }
                continue;
            }
            Line::Sample {
                timestamp: true, ..
            } => {
                return Err(err("unexpected timestamp".into()));
            }
            Line::Sample { sample, .. } => (sample.name, sample.labels, sample.value),
        };
        // Which family: `x_sum` / `x_count` belong to summary `x`, `x_bucket` to histogram.
        let family = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|suf| {
                let base = name.strip_suffix(suf)?;
                matches!(
                    types.get(base).map(String::as_str),
                    Some("summary" | "histogram")
                )
                .then(|| base.to_owned())
            })
            .unwrap_or_else(|| name.clone());
        let Some(kind) = types.get(&family) else {
            return Err(err(format!("sample of {family} before its TYPE")));
        };
        if !helps.contains(&family) {
            return Err(err(format!("sample of {family} without HELP")));
        }
        if current.as_deref() != Some(family.as_str()) {
            if finished.contains(&family) {
                return Err(err(format!("{family} is not one group")));
            }
            if let Some(prev) = current.replace(family.clone()) {
                finished.insert(prev);
            }
        }
        let has_quantile = labels.iter().any(|(k, _)| k == "quantile");
        if kind == "summary" && (name == family) != has_quantile {
            return Err(err("summary quantile label misplaced".into()));
        }
        let mut key_labels = labels.clone();
        key_labels.sort();
        if !series.insert(format!("{name}{key_labels:?}")) {
            return Err(err("duplicate series".into()));
        }
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_rejects_what_prometheus_rejects() {
        let ok = "# HELP a_total x\n# TYPE a_total counter\na_total{f=\"q\\\"\"} 1\n";
        assert!(parse_exposition(ok).is_ok());
        for bad in [
            "a_total 1\n",                                         // no TYPE
            "# HELP a_total x\n# TYPE a_total counter\na_total 1", // no final newline
            "# HELP a x\n# TYPE a gauge\n# TYPE a gauge\na 1\n",   // TYPE twice
            "# HELP a x\n# HELP a x\n# TYPE a gauge\na 1\n",       // HELP twice
            "# HELP a x\n# TYPE a gauge\na{f=\"x\\q\"} 1\n",       // bad escape
            "# HELP a x\n# TYPE a gauge\na{1f=\"x\"} 1\n",         // bad label name
            "# HELP a x\n# TYPE a gauge\na one\n",                 // bad value
            "# HELP a x\n# TYPE a gauge\na 1\na 2\n",              // duplicate series
            "# HELP a x\n# TYPE a counter\na 1\n",                 // counter w/o _total
            "# HELP a x\n# TYPE a gauge\n# HELP b x\n# TYPE b gauge\na{x=\"1\"} 1\nb 1\na 1\n", // split
        ] {
            assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn prometheus_lines_table() {
        /// Name, labels, value.
        type Want = (&'static str, Vec<(&'static str, &'static str)>, f64);
        let cases: &[(&str, Option<Want>)] = &[
            ("# HELP a x", None),
            ("", None),
            ("up 1", Some(("up", vec![], 1.0))),
            ("up 1 1700000000000", Some(("up", vec![], 1.0))),
            (
                r#"m{feed="a",venue="b"} 2.5"#,
                Some(("m", vec![("feed", "a"), ("venue", "b")], 2.5)),
            ),
            (
                r#"m{feed="we\"ird\\x\ny"} 3"#,
                Some(("m", vec![("feed", "we\"ird\\x\ny")], 3.0)),
            ),
            (r#"m{feed="a",} 4"#, Some(("m", vec![("feed", "a")], 4.0))),
            (r#"m{feed="a}"} 5"#, Some(("m", vec![("feed", "a}")], 5.0))),
            ("m NaN", Some(("m", vec![], f64::NAN))),
            ("m +Inf", Some(("m", vec![], f64::INFINITY))),
            ("m one", None),
            (r#"m{feed="a} 1"#, None),
            ("m", None),
        ];
        for (line, want) in cases {
            let got = parse_sample(line);
            match (got, want) {
                (None, None) => {}
                (Some(s), Some((name, labels, value))) => {
                    assert_eq!(s.name, *name, "{line}");
                    let labels: Vec<(String, String)> = labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect();
                    assert_eq!(s.labels, labels, "{line}");
                    assert!(
                        s.value == *value || (s.value.is_nan() && value.is_nan()),
                        "{line}"
                    );
                }
                (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
