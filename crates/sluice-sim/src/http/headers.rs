//! Header edits as Envoy's `HeaderParser` applies them: removals first,
//! then each `HeaderValueOption` by its append action. Used for the
//! route, virtual host and route configuration `*_headers_to_add` /
//! `*_headers_to_remove` (which the router applies) and by the local rate
//! limit's `response_headers_to_add`. Only literal values are modelled: a
//! value with a `%` formatter is `unsupported:`.

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderValueOption,
};

use crate::decode::DecodeError;

/// One level's edits (`*_headers_to_remove`, then `*_headers_to_add`).
#[derive(Debug, Default, PartialEq)]
pub struct HeaderEdits {
    remove: Vec<String>,
    add: Vec<HeaderEdit>,
}

#[derive(Debug, PartialEq)]
struct HeaderEdit {
    key: String,
    value: String,
    action: HeaderAppendAction,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.add.is_empty()
    }

    /// Applies the edits to lower-case `headers`.
    pub fn apply(&self, headers: &mut Vec<(String, String)>) {
        headers.retain(|(k, _)| !self.remove.contains(k));
        for e in &self.add {
            let present = headers.iter().any(|(k, _)| *k == e.key);
            match e.action {
                HeaderAppendAction::AppendIfExistsOrAdd => {}
                HeaderAppendAction::AddIfAbsent if present => continue,
                HeaderAppendAction::AddIfAbsent => {}
                HeaderAppendAction::OverwriteIfExists if !present => continue,
                HeaderAppendAction::OverwriteIfExists
                | HeaderAppendAction::OverwriteIfExistsOrAdd => {
                    headers.retain(|(k, _)| *k != e.key)
                }
            }
            headers.push((e.key.clone(), e.value.clone()));
        }
    }

    /// Decodes one level's options and removals; `what` names it in errors.
    // `append` is deprecated but Envoy still honours it.
    #[allow(deprecated)]
    pub fn decode(
        what: &str,
        add: &[HeaderValueOption],
        remove: &[String],
    ) -> Result<HeaderEdits, DecodeError> {
        let add = add
            .iter()
            .map(|o| {
                let h = o.header.clone().unwrap_or_default();
                if h.value.contains('%') || !h.raw_value.is_empty() {
                    return Err(DecodeError::Unsupported(format!(
                        "{what}: header {:?}: a value with a format string or raw bytes",
                        h.key
                    )));
                }
                let action = match &o.append {
                    Some(b) if b.value => HeaderAppendAction::AppendIfExistsOrAdd,
                    Some(_) => HeaderAppendAction::OverwriteIfExistsOrAdd,
                    None => HeaderAppendAction::try_from(o.append_action)
                        .unwrap_or(HeaderAppendAction::AppendIfExistsOrAdd),
                };
                Ok(HeaderEdit {
                    key: h.key.to_ascii_lowercase(),
                    value: h.value,
                    action,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(HeaderEdits {
            remove: remove.iter().map(|r| r.to_ascii_lowercase()).collect(),
            add,
        })
    }
}
