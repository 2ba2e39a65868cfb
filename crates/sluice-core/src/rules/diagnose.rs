//! Diagnostic wording shared by the loader and the YAML reader, and the
//! one check the YAML reader does not do: a second YAML document.
//!
//! `rules::yaml` places and words shape errors itself (with
//! `unknown_field` for unknown keys, as the loader does for the file's
//! top level); `second_document` scans the text, since the event reader
//! stops at the end of the first document and silently ignoring the rest
//! would drop rules.

use super::error::{shown, Loc};

/// "unknown field `x`; valid fields are `a`, `b`".
pub fn unknown_field(field: &str, valid: &[&str]) -> String {
    let valid: Vec<String> = valid.iter().map(|v| format!("`{v}`")).collect();
    format!(
        "unknown field `{}`; valid fields are {}",
        shown(field),
        valid.join(", ")
    )
}

/// Where a second YAML document starts, if any. The reader reads only the
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
