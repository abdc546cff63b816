//! Errors found in the spec, each pointing at the file and line that caused it.
//!
//! The generator never panics on bad input: a spec author gets a message they can act
//! on, naming where to look (and for a clash between layers, both places).

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: PathBuf,
    pub line: u32,
}

impl Loc {
    pub fn new(file: &Path, line: u32) -> Self {
        Loc {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.file.file_name().map(Path::new).unwrap_or(&self.file);
        write!(f, "{}:{}", name.display(), self.line)
    }
}

/// Why generation stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{loc}: {msg}")]
    Spec { loc: Loc, msg: String },
    #[error("{loc}: {msg} (clashes with {other})")]
    Clash { loc: Loc, other: Loc, msg: String },
    #[error("generated code does not parse as Rust ({what}): {msg}")]
    Emit { what: String, msg: String },
}

impl Error {
    pub fn spec(loc: &Loc, msg: impl Into<String>) -> Self {
        Error::Spec {
            loc: loc.clone(),
            msg: msg.into(),
        }
    }

    pub fn clash(loc: &Loc, other: &Loc, msg: impl Into<String>) -> Self {
        Error::Clash {
            loc: loc.clone(),
            other: other.clone(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
