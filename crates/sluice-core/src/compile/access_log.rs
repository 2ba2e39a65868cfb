//! A listener's [`model::AccessLog`] → the `access_log` of its HTTP
//! connection manager: Envoy's stdout logger with a JSON or text format.
//!
//! A JSON format is a `google.protobuf.Struct`, whose `fields` is a protobuf
//! map that prost would encode in random `HashMap` order. To keep output
//! byte-identical across processes, the logger's `Any` is encoded by hand:
//! one encoding of the message per field, each holding a one-entry map,
//! concatenated in the rules' order. Protobuf parsers merge repeated
//! occurrences of a message field (and append map entries), so Envoy — and
//! prost, in `check` and in tests — decode the full map.

use envoy_types::pb::envoy::config::accesslog::v3::{access_log, AccessLog};
use envoy_types::pb::envoy::config::core::v3::{
    data_source, substitution_format_string, DataSource, SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::stream::v3::{
    stdout_access_log, StdoutAccessLog,
};
use envoy_types::pb::google::protobuf::{value, Any, Struct, Value};
use prost::{Message, Name};

use crate::model;

pub const STDOUT_LOGGER: &str = "envoy.access_loggers.stdout";

/// The HCM's access logs for `log` (none when it is off).
pub(super) fn access_logs(log: &model::AccessLog) -> Vec<AccessLog> {
    let value = match log {
        model::AccessLog::Off => return Vec::new(),
        model::AccessLog::Json => json(
            model::DEFAULT_ACCESS_LOG_FIELDS
                .iter()
                .map(|(k, v)| (*k, *v)),
        ),
        model::AccessLog::JsonFields(fields) => {
            json(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }
        model::AccessLog::Text(text) => {
            let format = substitution_format_string::Format::TextFormatSource(DataSource {
                specifier: Some(data_source::Specifier::InlineString(text.clone())),
                ..Default::default()
            });
            stdout(format).encode_to_vec()
        }
    };
    vec![AccessLog {
        name: STDOUT_LOGGER.to_owned(),
        config_type: Some(access_log::ConfigType::TypedConfig(Any {
            type_url: StdoutAccessLog::type_url(),
            value,
        })),
        ..Default::default()
    }]
}

/// `StdoutAccessLog` bytes with a JSON format of `fields`, in order.
fn json<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, operator) in fields {
        let one = Struct {
            fields: [(
                key.to_owned(),
                Value {
                    kind: Some(value::Kind::StringValue(operator.to_owned())),
                },
            )]
            .into(),
        };
        let format = substitution_format_string::Format::JsonFormat(one);
        out.extend(stdout(format).encode_to_vec());
    }
    out
}

fn stdout(format: substitution_format_string::Format) -> StdoutAccessLog {
    StdoutAccessLog {
        access_log_format: Some(stdout_access_log::AccessLogFormat::LogFormat(
            SubstitutionFormatString {
                format: Some(format),
                ..Default::default()
            },
        )),
    }
}
