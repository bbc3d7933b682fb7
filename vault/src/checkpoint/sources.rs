//! Where `audit-verify` reads checkpoints: the database's rows and files of off-host
//! copies (vault's log lines as shipped, or bare JWS lines), each named for messages.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a checkpoint was read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The `audit_checkpoints` table.
    Database,
    /// A line of a checkpoint file (from 1).
    File {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
    },
}

impl Source {
    /// What the per-source counts are grouped by: the database or the file.
    pub(super) fn origin(&self) -> String {
        match self {
            Source::Database => "database".into(),
            Source::File { path, .. } => path.display().to_string(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Database => f.write_str("from the database"),
            Source::File { path, line } => write!(f, "from {} line {line}", path.display()),
        }
    }
}

/// A checkpoint to check, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it was read.
    pub source: Source,
    /// Its compact JWS (or whatever the line held).
    pub jws: String,
}

/// The checkpoints in a file's text: one per line, either the JWS itself or a log line
/// carrying it as `checkpoint=<JWS>` (what vault logs, so `grep 'audit checkpoint'` output
/// can be given as it is). Empty lines and `#` comments are skipped; any other line is
/// kept, to fail as malformed where it can be named.
pub fn checkpoints_in(path: &Path, text: &str) -> Vec<Candidate> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let jws = line
                .split_whitespace()
                .find_map(|word| word.strip_prefix("checkpoint="))
                .unwrap_or(line);
            Some(Candidate {
                source: Source::File {
                    path: path.to_owned(),
                    line: i + 1,
                },
                jws: jws.to_owned(),
            })
        })
        .collect()
}
