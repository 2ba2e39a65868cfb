//! Helpers over the generated messages.

use prost::{Message, Name};

use crate::pb::google::protobuf::Any;

/// Packs a message into an [`Any`]: its type URL
/// (`type.googleapis.com/<full name>`) and its encoding.
pub fn pack_any<T: Name + Message>(value: T) -> Any {
    Any {
        type_url: T::type_url(),
        value: value.encode_to_vec(),
    }
}
