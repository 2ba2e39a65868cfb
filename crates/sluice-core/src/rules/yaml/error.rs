//! [`Error`]: what went wrong reading the rules YAML, where (line:column)
//! and on which field path (`services[0].endpoints[1].port`).
//!
//! serde reports through `de::Error`'s constructors; the ones a user meets
//! (`unknown_field`, `invalid_type`, `missing_field`, `duplicate_field`)
//! are kept structured here and worded as `rules::diagnose::describe`
//! words marked-yaml's errors today, so diagnostics read the same after
//! the switch. The deserializer fills the position and path at the
//! innermost node that failed.

use std::fmt;
use std::num::{ParseFloatError, ParseIntError};

use serde::de;

use super::spanned::Marker;
use crate::rules::diagnose::unknown_field;
use crate::rules::error::shown;

/// One problem, with where it is once the deserializer has placed it.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    /// `None` until the node that failed is known.
    at: Option<Marker>,
    path: String,
}

/// What went wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// The text is not YAML; the event stream cannot go on.
    Syntax(String),
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    InvalidType {
        found: String,
        expected: String,
    },
    MissingField(&'static str),
    DuplicateField(&'static str),
    /// A key written twice in one mapping.
    DuplicateKey {
        key: String,
        first_line: usize,
    },
    NotBoolean,
    Integer(ParseIntError),
    Float(ParseFloatError),
    /// Anchors, aliases and tags, which the rules format does not use.
    Unsupported(Unsupported),
    /// A mapping key that is a list or mapping.
    KeyNotScalar,
    /// Any other message serde builds (`invalid value: ...`).
    Other(String),
}

/// The YAML features the rules format refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    Anchors,
    Tags,
}

impl Error {
    pub fn new(kind: ErrorKind) -> Error {
        Error {
            kind,
            at: None,
            path: String::new(),
        }
    }

    /// An error already placed.
    pub fn at(kind: ErrorKind, at: Marker, path: String) -> Error {
        Error {
            kind,
            at: Some(at),
            path,
        }
    }

    /// Where the problem is; `None` only for an error never placed (the
    /// loader reports those at the entry that failed).
    pub fn marker(&self) -> Option<Marker> {
        self.at
    }

    /// The field path, `""` for the document root.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A syntax error ends the event stream: nothing after it can be read.
    pub fn is_fatal(&self) -> bool {
        matches!(self.kind, ErrorKind::Syntax(_))
    }

    pub(super) fn is_placed(&self) -> bool {
        self.at.is_some()
    }

    pub(super) fn place(&mut self, at: Marker, path: String) {
        self.at = Some(at);
        self.path = path;
    }

    /// The sentence a diagnostic shows (without position or path).
    pub fn message(&self) -> String {
        match &self.kind {
            ErrorKind::Syntax(info) => format!("invalid YAML: {info}"),
            ErrorKind::UnknownField { field, expected } => unknown_field(field, expected),
            ErrorKind::InvalidType { found, expected } => {
                let expected = expected.replace("a sequence", "a list");
                format!("wrong type: expected {expected}, found {found}")
            }
            ErrorKind::MissingField(field) => format!("missing field `{field}`"),
            ErrorKind::DuplicateField(field) => format!("duplicate field `{field}`"),
            ErrorKind::DuplicateKey { key, first_line } => {
                format!(
                    "duplicate key `{}` (first at line {first_line})",
                    shown(key)
                )
            }
            ErrorKind::NotBoolean => "wrong type: expected `true` or `false`".to_string(),
            ErrorKind::Integer(e) => format!("wrong type: expected an integer ({e})"),
            ErrorKind::Float(e) => format!("wrong type: expected a number ({e})"),
            ErrorKind::Unsupported(Unsupported::Anchors) => {
                "YAML anchors and aliases are not supported".to_string()
            }
            ErrorKind::Unsupported(Unsupported::Tags) => {
                "YAML tags (`!foo`, `!!str`) are not supported".to_string()
            }
            ErrorKind::KeyNotScalar => "mapping keys must be plain strings".to_string(),
            ErrorKind::Other(msg) => msg.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = self.at {
            let path = if self.path.is_empty() {
                "<root>"
            } else {
                &self.path
            };
            write!(f, "{at}: {path}: ")?;
        }
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error::new(ErrorKind::Other(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Error::new(ErrorKind::InvalidType {
            found: unexp.to_string(),
            expected: exp.to_string(),
        })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(ErrorKind::UnknownField {
            field: field.to_string(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(ErrorKind::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(ErrorKind::DuplicateField(field))
    }
}
