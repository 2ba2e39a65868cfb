//! The few X.509 and EC key fields the certificate check reads, decoded
//! with `der` (already in the dependency tree through `rsa`/`pkcs8`): the
//! leaf's notAfter and public key, and the curve and public key an EC
//! private key file carries.
//!
//! Why not rustls alone: ring (rustls' provider here) has no P-521, which
//! Envoy 1.40 serves; for those keys the check compares the public key
//! stored in the key file with the certificate's instead.

use std::time::Duration;

use der::asn1::{AnyRef, BitStringRef, GeneralizedTime, ObjectIdentifier, OctetStringRef, UtcTime};
use der::{Decode, Reader, SliceReader, Tag, TagNumber};
use rustls::pki_types::PrivateKeyDer;

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp521r1, NIST P-521 (RFC 5480).
pub const P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");

/// What the check reads from the leaf certificate.
#[derive(Debug, PartialEq, Eq)]
pub struct Leaf {
    /// notAfter, seconds since the Unix epoch.
    pub not_after: u64,
    /// The named curve of an EC public key; `None` for other key types.
    pub curve: Option<ObjectIdentifier>,
    /// subjectPublicKey's bits (for EC, the encoded point).
    pub public_key: Vec<u8>,
}

/// The parts of an EC private key file the check compares.
#[derive(Debug, PartialEq, Eq)]
pub struct EcKey {
    pub curve: Option<ObjectIdentifier>,
    /// The public point, when the file carries it (OpenSSL and Go write it).
    pub public_key: Option<Vec<u8>>,
}

/// Decodes the fields of [`Leaf`] from a certificate's DER.
pub fn leaf(cert: &[u8]) -> Result<Leaf, der::Error> {
    let mut r = SliceReader::new(cert)?;
    let leaf = r.sequence(|cert| {
        let leaf = cert.sequence(|tbs| {
            if tbs.peek_tag()? == context(0) {
                AnyRef::decode(tbs)?; // version
            }
            AnyRef::decode(tbs)?; // serialNumber
            AnyRef::decode(tbs)?; // signature
            AnyRef::decode(tbs)?; // issuer
            let not_after = tbs.sequence(|validity| {
                time(validity)?; // notBefore
                time(validity)
            })?;
            AnyRef::decode(tbs)?; // subject
            let (curve, public_key) = tbs.sequence(|spki| {
                let curve = algorithm_curve(spki)?;
                let bits = BitStringRef::decode(spki)?;
                Ok((curve, bits.raw_bytes().to_vec()))
            })?;
            skip_rest(tbs)?; // unique ids, extensions
            Ok(Leaf {
                not_after: not_after.as_secs(),
                curve,
                public_key,
            })
        })?;
        skip_rest(cert)?; // signatureAlgorithm, signatureValue
        Ok(leaf)
    })?;
    r.finish(leaf)
}

/// Whether `key` is PKCS#8 v2 (RFC 5958 OneAsymmetricKey, version 1):
/// BoringSSL, so Envoy, reads only v1 ("SEQUENCE_LENGTH_MISMATCH"), and
/// ring writes v2 for Ed25519.
pub fn pkcs8_v2(key: &PrivateKeyDer<'_>) -> Result<bool, der::Error> {
    let PrivateKeyDer::Pkcs8(k) = key else {
        return Ok(false);
    };
    let mut r = SliceReader::new(k.secret_pkcs8_der())?;
    let v2 = r.sequence(|info| {
        let version = u8::decode(info)?;
        skip_rest(info)?;
        Ok(version != 0)
    })?;
    r.finish(v2)
}

/// Reads an EC private key (PKCS#8 or SEC1); `None` when `key` is not EC.
pub fn ec_key(key: &PrivateKeyDer<'_>) -> Result<Option<EcKey>, der::Error> {
    match key {
        PrivateKeyDer::Sec1(k) => sec1(k.secret_sec1_der(), None).map(Some),
        PrivateKeyDer::Pkcs8(k) => {
            let mut r = SliceReader::new(k.secret_pkcs8_der())?;
            let key = r.sequence(|info| {
                AnyRef::decode(info)?; // version
                let (is_ec, curve) = info.sequence(|alg| {
                    let oid = ObjectIdentifier::decode(alg)?;
                    let curve = Option::<ObjectIdentifier>::decode(alg)?;
                    skip_rest(alg)?;
                    Ok((oid == EC_PUBLIC_KEY, curve))
                })?;
                let private = OctetStringRef::decode(info)?;
                skip_rest(info)?; // attributes, v2 public key
                if !is_ec {
                    return Ok(None);
                }
                sec1(private.as_bytes(), curve).map(Some)
            })?;
            r.finish(key)
        }
        _ => Ok(None),
    }
}

/// RFC 5915 ECPrivateKey; `curve` is the one named outside it (PKCS#8).
fn sec1(der: &[u8], curve: Option<ObjectIdentifier>) -> Result<EcKey, der::Error> {
    let mut r = SliceReader::new(der)?;
    let key = r.sequence(|k| {
        AnyRef::decode(k)?; // version
        OctetStringRef::decode(k)?; // privateKey
        let mut key = EcKey {
            curve,
            public_key: None,
        };
        if !k.is_finished() && k.peek_tag()? == context(0) {
            let params = AnyRef::decode(k)?;
            key.curve = Some(ObjectIdentifier::from_der(params.value())?);
        }
        if !k.is_finished() && k.peek_tag()? == context(1) {
            let public = AnyRef::decode(k)?;
            let bits = BitStringRef::from_der(public.value())?;
            key.public_key = Some(bits.raw_bytes().to_vec());
        }
        Ok(key)
    })?;
    r.finish(key)
}

/// AlgorithmIdentifier: the named curve when the algorithm is EC.
fn algorithm_curve<'a, R: Reader<'a>>(r: &mut R) -> Result<Option<ObjectIdentifier>, der::Error> {
    r.sequence(|alg| {
        let oid = ObjectIdentifier::decode(alg)?;
        let curve = if oid == EC_PUBLIC_KEY {
            Option::<ObjectIdentifier>::decode(alg)?
        } else {
            None
        };
        skip_rest(alg)?;
        Ok(curve)
    })
}

/// RFC 5280 Time: UTCTime or GeneralizedTime, as time since the epoch.
fn time<'a, R: Reader<'a>>(r: &mut R) -> Result<Duration, der::Error> {
    if r.peek_tag()? == Tag::UtcTime {
        Ok(UtcTime::decode(r)?.to_unix_duration())
    } else {
        Ok(GeneralizedTime::decode(r)?.to_unix_duration())
    }
}

fn skip_rest<'a, R: Reader<'a>>(r: &mut R) -> Result<(), der::Error> {
    let rest = r.remaining_len();
    r.read_slice(rest).map(|_| ())
}

/// A constructed context-specific tag `[n]` (EXPLICIT).
fn context(n: u8) -> Tag {
    Tag::ContextSpecific {
        constructed: true,
        number: TagNumber::new(n),
    }
}
