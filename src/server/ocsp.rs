//! OCSP stapling from a file: which responses phigate is willing to staple.
//!
//! phigate does not fetch OCSP responses (a cron job with `openssl ocsp`
//! does, docs/tls.md); it staples the file's DER response to its
//! certificate. A response is stapled only if it is about this very
//! certificate, says "good", and is current: a wrong, revoked or stale
//! response is refused at load, and one that goes stale while served is
//! dropped (by `tls::ReloadingCert::check`) rather than shown to clients. The
//! signature is the client's to verify; phigate holds no responder trust.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, Class, FromDer, GeneralizedTime, Tag};

/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 (content octets).
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

/// How far in the future a response's thisUpdate may be (clock skew).
const SKEW: Duration = Duration::from_secs(5 * 60);

/// Why an OCSP response file is not stapled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OcspError {
    #[error("the file is empty")]
    Empty,
    #[error("not a DER OCSP response ({0}); fetch one with `openssl ocsp ... -respout FILE`")]
    Malformed(&'static str),
    #[error("the responder answered {0:?}, not a response")]
    Unsuccessful(&'static str),
    #[error("it is not a basic OCSP response")]
    NotBasic,
    #[error("it is about another certificate (no entry for this certificate's serial number and issuer)")]
    OtherCertificate,
    #[error("it says the certificate is revoked: replace the certificate")]
    Revoked,
    #[error("its responder does not know the certificate (status unknown)")]
    Unknown,
    #[error("it has no nextUpdate, so phigate cannot tell when it goes stale")]
    NoNextUpdate,
    #[error("it expired at {0} (nextUpdate); fetch a fresh one")]
    Expired(String),
    #[error("it is not valid until {0} (thisUpdate): check the clock")]
    NotYetValid(String),
    #[error("its CertID uses a hash algorithm phigate cannot check")]
    UnknownHash,
}

/// A response fit to staple, and until when.
#[derive(Debug, Clone)]
pub struct Staple {
    pub der: Vec<u8>,
    pub next_update: SystemTime,
}

impl Staple {
    /// Checks `der` against the certificate chain (leaf first) at `now`.
    pub fn check(der: Vec<u8>, chain: &[&[u8]], now: SystemTime) -> Result<Staple, OcspError> {
        if der.is_empty() {
            return Err(OcspError::Empty);
        }
        let leaf_der = chain.first().ok_or(OcspError::OtherCertificate)?;
        let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
            .map_err(|_| OcspError::OtherCertificate)?;
        let issuer = chain[1..]
            .iter()
            .filter_map(|c| x509_parser::parse_x509_certificate(c).ok())
            .map(|(_, c)| c)
            .find(|c| c.subject().as_raw() == leaf.issuer().as_raw());
        let single = find_single_response(&der, &leaf, issuer.as_ref())?;
        let this_update = time(single.this_update)?;
        if this_update > now + SKEW {
            return Err(OcspError::NotYetValid(rfc3339(this_update)));
        }
        let next_update = time(single.next_update.ok_or(OcspError::NoNextUpdate)?)?;
        if now >= next_update {
            return Err(OcspError::Expired(rfc3339(next_update)));
        }
        match single.status {
            0 => Ok(Staple { der, next_update }),
            1 => Err(OcspError::Revoked),
            _ => Err(OcspError::Unknown),
        }
    }

    /// Still fit to staple at `now`.
    pub fn is_current(&self, now: SystemTime) -> bool {
        now < self.next_update
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The parts of a SingleResponse phigate checks.
struct Single<'a> {
    status: u32,
    this_update: Any<'a>,
    next_update: Option<Any<'a>>,
}

/// One DER element and what follows it.
fn next(input: &[u8]) -> Result<(Any<'_>, &[u8]), OcspError> {
    Any::from_der(input)
        .map(|(rest, any)| (any, rest))
        .map_err(|_| OcspError::Malformed("bad DER"))
}

/// The element, if it is a universal `tag`.
fn expect<'a>(any: Any<'a>, tag: Tag, what: &'static str) -> Result<Any<'a>, OcspError> {
    if any.class() == Class::Universal && any.tag() == tag {
        Ok(any)
    } else {
        Err(OcspError::Malformed(what))
    }
}

fn is_context(any: &Any<'_>, n: u32) -> bool {
    any.class() == Class::ContextSpecific && any.tag() == Tag(n)
}

fn time(any: Any<'_>) -> Result<SystemTime, OcspError> {
    let t = GeneralizedTime::try_from(any).map_err(|_| OcspError::Malformed("bad time"))?;
    let secs = t
        .utc_datetime()
        .map_err(|_| OcspError::Malformed("bad time"))?
        .unix_timestamp();
    let secs = u64::try_from(secs).map_err(|_| OcspError::Malformed("time before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Walks OCSPResponse → BasicOCSPResponse → ResponseData to the
/// SingleResponse about `leaf` (RFC 6960, 4.2.1).
fn find_single_response<'a>(
    der: &'a [u8],
    leaf: &X509Certificate<'_>,
    issuer: Option<&X509Certificate<'_>>,
) -> Result<Single<'a>, OcspError> {
    let (top, trailing) = next(der)?;
    if !trailing.is_empty() {
        return Err(OcspError::Malformed("data after the response"));
    }
    let top = expect(top, Tag::Sequence, "not a SEQUENCE")?;
    let (status, rest) = next(top.data)?;
    let status = expect(status, Tag::Enumerated, "no responseStatus")?;
    match status.data {
        [0] => {}
        [1] => return Err(OcspError::Unsuccessful("malformedRequest")),
        [2] => return Err(OcspError::Unsuccessful("internalError")),
        [3] => return Err(OcspError::Unsuccessful("tryLater")),
        [5] => return Err(OcspError::Unsuccessful("sigRequired")),
        [6] => return Err(OcspError::Unsuccessful("unauthorized")),
        _ => return Err(OcspError::Malformed("unknown responseStatus")),
    }
    let (bytes, _) = next(rest)?;
    if !is_context(&bytes, 0) {
        return Err(OcspError::Malformed("no responseBytes"));
    }
    let (bytes, _) = next(bytes.data)?;
    let bytes = expect(bytes, Tag::Sequence, "bad responseBytes")?;
    let (kind, rest) = next(bytes.data)?;
    if expect(kind, Tag::Oid, "no responseType")?.data != OCSP_BASIC {
        return Err(OcspError::NotBasic);
    }
    let (octets, _) = next(rest)?;
    let basic = expect(octets, Tag::OctetString, "no response")?;
    let (basic, _) = next(basic.data)?;
    let basic = expect(basic, Tag::Sequence, "bad BasicOCSPResponse")?;
    let (tbs, _) = next(basic.data)?;
    let tbs = expect(tbs, Tag::Sequence, "bad ResponseData")?;

    // ResponseData: [0] version?, responderID ([1] | [2]), producedAt, responses.
    let (mut item, mut rest) = next(tbs.data)?;
    if is_context(&item, 0) {
        (item, rest) = next(rest)?;
    }
    if !(is_context(&item, 1) || is_context(&item, 2)) {
        return Err(OcspError::Malformed("no responderID"));
    }
    let (produced, rest) = next(rest)?;
    expect(produced, Tag::GeneralizedTime, "no producedAt")?;
    let (responses, _) = next(rest)?;
    let mut responses = expect(responses, Tag::Sequence, "no responses")?.data;
    while !responses.is_empty() {
        let (single, rest) = next(responses)?;
        responses = rest;
        let single = expect(single, Tag::Sequence, "bad SingleResponse")?;
        let (cert_id, rest) = next(single.data)?;
        let cert_id = expect(cert_id, Tag::Sequence, "bad CertID")?;
        if !about(cert_id.data, leaf, issuer)? {
            continue;
        }
        let (status, rest) = next(rest)?;
        let status = match status.class() {
            Class::ContextSpecific if status.tag().0 <= 2 => status.tag().0,
            _ => return Err(OcspError::Malformed("bad certStatus")),
        };
        let (this_update, rest) = next(rest)?;
        let this_update = expect(this_update, Tag::GeneralizedTime, "no thisUpdate")?;
        let next_update = match next(rest) {
            Ok((n, _)) if is_context(&n, 0) => {
                let (t, _) = next(n.data)?;
                Some(expect(t, Tag::GeneralizedTime, "bad nextUpdate")?)
            }
            _ => None,
        };
        return Ok(Single {
            status,
            this_update,
            next_update,
        });
    }
    Err(OcspError::OtherCertificate)
}

/// Whether a CertID (hashAlgorithm, issuerNameHash, issuerKeyHash,
/// serialNumber) names `leaf`. The issuer key hash is checked when the
/// issuer's certificate is in the chain.
fn about(
    cert_id: &[u8],
    leaf: &X509Certificate<'_>,
    issuer: Option<&X509Certificate<'_>>,
) -> Result<bool, OcspError> {
    let (alg, rest) = next(cert_id)?;
    let alg = expect(alg, Tag::Sequence, "bad hashAlgorithm")?;
    let (oid, _) = next(alg.data)?;
    let oid = expect(oid, Tag::Oid, "bad hashAlgorithm")?;
    let (name_hash, rest) = next(rest)?;
    let name_hash = expect(name_hash, Tag::OctetString, "bad issuerNameHash")?;
    let (key_hash, rest) = next(rest)?;
    let key_hash = expect(key_hash, Tag::OctetString, "bad issuerKeyHash")?;
    let (serial, _) = next(rest)?;
    let serial = expect(serial, Tag::Integer, "bad serialNumber")?;
    if serial.data != leaf.raw_serial() {
        return Ok(false);
    }
    use ring::digest;
    let alg = match oid.data {
        [0x2b, 0x0e, 0x03, 0x02, 0x1a] => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n @ 1..=3] => match n {
            1 => &digest::SHA256,
            2 => &digest::SHA384,
            _ => &digest::SHA512,
        },
        _ => return Err(OcspError::UnknownHash),
    };
    if digest::digest(alg, leaf.issuer().as_raw()).as_ref() != name_hash.data {
        return Ok(false);
    }
    if let Some(issuer) = issuer {
        let key = &issuer.public_key().subject_public_key.data;
        if digest::digest(alg, key).as_ref() != key_hash.data {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
#[path = "ocsp_tests.rs"]
pub(crate) mod tests;
