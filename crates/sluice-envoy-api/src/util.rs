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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::core::v3::{socket_address::PortSpecifier, SocketAddress};
    use crate::pb::google::protobuf::Duration;

    #[test]
    fn pack_any_names_the_full_type_and_holds_its_encoding() {
        let addr = SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(PortSpecifier::PortValue(10000)),
            ..Default::default()
        };
        let any = pack_any(addr.clone());
        assert_eq!(
            any.type_url,
            "type.googleapis.com/envoy.config.core.v3.SocketAddress"
        );
        assert_eq!(any.value, addr.encode_to_vec());
        assert_eq!(
            Any::decode(any.encode_to_vec().as_slice()).expect("decodes"),
            any
        );
    }

    #[test]
    fn well_known_types_are_generated_here_with_their_wire_format() {
        // google.protobuf.Duration: seconds = field 1 (varint), nanos = 2.
        let d = Duration {
            seconds: 1,
            nanos: 5,
        };
        assert_eq!(d.encode_to_vec(), [0x08, 0x01, 0x10, 0x05]);
        assert_eq!(
            Duration::type_url(),
            "type.googleapis.com/google.protobuf.Duration"
        );
    }
}
