//! marked-yaml's errors → diagnostics a user can act on.
//!
//! marked-yaml reports load errors with a mark and deserialization errors
//! with a serde path; this file finds the node each one is about (its key,
//! for an unknown field), words the message for a person, and catches the
//! one thing marked-yaml silently drops: a second YAML document.

use marked_yaml::types::MarkedScalarNode;
use marked_yaml::Node;

use super::error::{shown, Diags, Loc, ROOT};

/// Where a deserialization error belongs: the node at the error's path
/// (the key itself for an unknown field). marked-yaml's own fallback stops
/// at the first `Spanned` wrapper, which can be several levels too high.
pub fn error_loc(entry: &Node, err: &marked_yaml::FromNodeError, diags: &Diags) -> Option<Loc> {
    let at_path = err.path().map_or(Some((entry, None)), |p| locate(entry, p));
    match at_path {
        Some((_, Some(key))) if matches!(&**err, marked_yaml::Error::UnknownFieldError(..)) => {
            diags.loc_opt(key.span())
        }
        Some((node, _)) => diags.loc_opt(node.span()),
        None => err
            .start_mark()
            .and_then(|m| diags.loc_opt(&marked_yaml::Span::new_start(m))),
    }
}

/// The node at a rendered serde path (`a.b[2].c`) below `node`, with the key
/// that led to it. Keys may contain `.` (label names do), so at each mapping
/// the longest key that fits the rest of the path wins.
fn locate<'a>(node: &'a Node, path: &str) -> Option<(&'a Node, Option<&'a MarkedScalarNode>)> {
    let (mut node, mut key, mut rest) = (node, None, path);
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let (index, after) = after.split_once(']')?;
            node = node.as_sequence()?.get(index.parse::<usize>().ok()?)?;
            key = None;
            rest = after;
        } else {
            let fits = |k: &str| {
                rest.strip_prefix(k)
                    .is_some_and(|r| r.is_empty() || r.starts_with(['.', '[']))
            };
            let (k, v) = node
                .as_mapping()?
                .iter()
                .filter(|(k, _)| fits(k.as_str()))
                .max_by_key(|(k, _)| k.as_str().len())?;
            node = v;
            key = Some(k);
            rest = &rest[k.as_str().len()..];
        }
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    Some((node, key))
}

/// A user-facing sentence for a deserialization error.
pub fn describe(err: &marked_yaml::FromNodeError) -> String {
    use marked_yaml::Error;
    match &**err {
        Error::UnknownFieldError(field, expected, _) => unknown_field(field, expected),
        Error::NotBoolean(_) => "wrong type: expected `true` or `false`".to_string(),
        Error::IntegerParseFailure(e, _) => format!("wrong type: expected an integer ({e})"),
        Error::FloatParseFailure(e, _) => format!("wrong type: expected a number ({e})"),
        Error::Other(msg, _) => match msg.strip_prefix("invalid type: ") {
            Some(rest) => match rest.rsplit_once(", expected ") {
                Some((found, expected)) => {
                    let expected = expected.replace("a sequence", "a list");
                    format!("wrong type: expected {expected}, found {found}")
                }
                None => format!("wrong type: {rest}"),
            },
            None => msg.clone(),
        },
    }
}

pub fn unknown_field(field: &str, valid: &[&str]) -> String {
    let valid: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
    format!(
        "unknown field `{}`; valid fields are {}",
        shown(field),
        valid.join(", ")
    )
}

pub fn report_load_error(err: &marked_yaml::LoadError, diags: &mut Diags) {
    use marked_yaml::LoadError as E;
    let (marker, message) = match err {
        E::TopLevelMustBeMapping(m) => (
            *m,
            "the file must be a mapping with `services` and `listeners`".to_string(),
        ),
        E::TopLevelMustBeSequence(m) => (*m, "the file must be a list".to_string()),
        E::UnexpectedAnchor(m) => (*m, "YAML anchors and aliases are not supported".to_string()),
        E::MappingKeyMustBeScalar(m) => (*m, "mapping keys must be plain strings".to_string()),
        E::UnexpectedTag(m) => (
            *m,
            "YAML tags (`!foo`, `!!str`) are not supported".to_string(),
        ),
        E::ScanError(m, e) => (*m, format!("invalid YAML: {}", e.info())),
        E::DuplicateKey(inner) => {
            let first = inner
                .prev_key
                .span()
                .start()
                .map(|m| format!(" (first at line {})", m.line()))
                .unwrap_or_default();
            let message = format!("duplicate key `{}`{first}", inner.key.as_str());
            match inner.key.span().start() {
                Some(m) => (*m, message),
                None => {
                    diags.error_at(Loc::START, ROOT, message);
                    return;
                }
            }
        }
    };
    let loc = diags.loc(&marked_yaml::Span::new_start(marker));
    diags.error_at(loc, ROOT, message);
}

/// Where a second YAML document starts, if any. marked-yaml reads only the
/// first one; silently ignoring the rest would drop rules.
pub fn second_document(text: &str) -> Option<Loc> {
    let mut seen_content = false;
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let loc = Loc {
            line: i + 1,
            column: 1,
        };
        let marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if marker("---") {
            if seen_content || ended {
                return Some(loc);
            }
            let rest = line[3..].trim_start();
            seen_content = !rest.is_empty() && !rest.starts_with('#');
        } else if marker("...") {
            ended = true;
        } else {
            let trimmed = line.trim_start();
            let is_content =
                !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with('%');
            if is_content && ended {
                return Some(loc);
            }
            seen_content |= is_content;
        }
    }
    None
}
