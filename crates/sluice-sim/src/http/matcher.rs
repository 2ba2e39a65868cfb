//! Envoy's `StringMatcher` decoded once into a [`ValueMatch`] (its regex
//! built, its case folded), for header, query parameter and CORS origin
//! matching.

use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use regex::Regex;

use crate::decode::DecodeError;

/// A `StringMatcher` with its regex built.
#[derive(Debug)]
pub(crate) enum ValueMatch {
    Exact(String, bool),
    Prefix(String, bool),
    Suffix(String, bool),
    Contains(String, bool),
    Regex(Regex),
}

/// RE2 `safe_regex` matches the whole value.
pub(crate) fn full_regex(pattern: &str) -> Result<Regex, DecodeError> {
    Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| DecodeError::Invalid(format!("Invalid regex '{pattern}': {e}")))
}

pub(crate) fn value_match(sm: &StringMatcher) -> Result<ValueMatch, DecodeError> {
    let ic = sm.ignore_case;
    let low = |s: &String| if ic { s.to_lowercase() } else { s.clone() };
    Ok(match &sm.match_pattern {
        Some(MatchPattern::Exact(s)) => ValueMatch::Exact(low(s), ic),
        Some(MatchPattern::Prefix(s)) => ValueMatch::Prefix(low(s), ic),
        Some(MatchPattern::Suffix(s)) => ValueMatch::Suffix(low(s), ic),
        Some(MatchPattern::Contains(s)) => ValueMatch::Contains(low(s), ic),
        Some(MatchPattern::SafeRegex(re)) => ValueMatch::Regex(full_regex(&re.regex)?),
        other => {
            return Err(DecodeError::Unsupported(format!(
                "string matcher {other:?}"
            )))
        }
    })
}

impl ValueMatch {
    pub(crate) fn matches(&self, v: &str) -> bool {
        let fold = |a: &str, ic: bool| if ic { a.to_lowercase() } else { a.to_string() };
        match self {
            ValueMatch::Exact(s, ic) => fold(v, *ic) == *s,
            ValueMatch::Prefix(s, ic) => fold(v, *ic).starts_with(s.as_str()),
            ValueMatch::Suffix(s, ic) => fold(v, *ic).ends_with(s.as_str()),
            ValueMatch::Contains(s, ic) => fold(v, *ic).contains(s.as_str()),
            ValueMatch::Regex(re) => re.is_match(v),
        }
    }
}
