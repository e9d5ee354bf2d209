//! OCSP responses built by hand (DER), checked against a real certificate
//! chain from rcgen.

use super::*;
use ring::digest;

/// A DER element: tag byte, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

fn gtime(t: SystemTime) -> Vec<u8> {
    // YYYYMMDDHHMMSSZ from RFC 3339 seconds.
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let digits: String = s.chars().filter(|c| c.is_ascii_digit()).collect();
    der(0x18, format!("{digits}Z").as_bytes())
}

pub(crate) struct Chain {
    pub leaf: Vec<u8>,
    pub issuer: Vec<u8>,
    /// The leaf and its issuer as a PEM chain, and the leaf's PEM key.
    pub chain_pem: String,
    pub key_pem: String,
}

pub(crate) fn chain() -> Chain {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ocsp test CA");
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Chain {
        leaf: leaf.der().to_vec(),
        issuer: ca.der().to_vec(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Spec {
    pub status: u8,
    pub cert_status: u8,
    pub this_update: SystemTime,
    pub next_update: Option<SystemTime>,
    pub wrong_serial: bool,
    pub wrong_key: bool,
}

pub(crate) fn spec() -> Spec {
    let now = SystemTime::now();
    Spec {
        status: 0,
        cert_status: 0,
        this_update: now - Duration::from_secs(3600),
        next_update: Some(now + Duration::from_secs(3 * 86400)),
        wrong_serial: false,
        wrong_key: false,
    }
}

/// An OCSPResponse about `chain.leaf` as `s` says (signature bytes are filler:
/// phigate leaves signature checks to clients).
pub(crate) fn response(c: &Chain, s: Spec) -> Vec<u8> {
    let (_, leaf) = x509_parser::parse_x509_certificate(&c.leaf).unwrap();
    let (_, issuer) = x509_parser::parse_x509_certificate(&c.issuer).unwrap();
    let sha1 = &digest::SHA1_FOR_LEGACY_USE_ONLY;
    let name_hash = digest::digest(sha1, leaf.issuer().as_raw());
    let mut key = issuer.public_key().subject_public_key.data.to_vec();
    if s.wrong_key {
        key[5] ^= 1;
    }
    let key_hash = digest::digest(sha1, &key);
    let mut serial = leaf.raw_serial().to_vec();
    if s.wrong_serial {
        serial[0] ^= 0x01;
    }
    let cert_id = seq(&[
        seq(&[der(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a]), der(0x05, &[])]),
        der(0x04, name_hash.as_ref()),
        der(0x04, key_hash.as_ref()),
        der(0x02, &serial),
    ]);
    let cert_status = match s.cert_status {
        0 => der(0x80, &[]),
        1 => der(0xa1, &gtime(s.this_update)),
        _ => der(0x82, &[]),
    };
    let mut single = vec![cert_id, cert_status, gtime(s.this_update)];
    if let Some(n) = s.next_update {
        single.push(der(0xa0, &gtime(n)));
    }
    let other = {
        let mut id = leaf.raw_serial().to_vec();
        id.push(7);
        seq(&[
            seq(&[
                seq(&[der(0x06, &[0x2b, 0x0e, 0x03, 0x02, 0x1a])]),
                der(0x04, &[0; 20]),
                der(0x04, &[0; 20]),
                der(0x02, &id),
            ]),
            der(0x80, &[]),
            gtime(s.this_update),
        ])
    };
    let tbs = seq(&[
        der(0xa2, &der(0x04, key_hash.as_ref())),
        gtime(s.this_update),
        seq(&[other, seq(&single)]),
    ]);
    let basic = seq(&[
        tbs,
        seq(&[der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02])]),
        der(0x03, &[0, 1, 2, 3]),
    ]);
    let bytes = seq(&[der(0x06, OCSP_BASIC), der(0x04, &basic)]);
    if s.status != 0 {
        return seq(&[der(0x0a, &[s.status])]);
    }
    seq(&[der(0x0a, &[0]), der(0xa0, &bytes)])
}

fn check(c: &Chain, der: Vec<u8>, with_issuer: bool) -> Result<Staple, OcspError> {
    let chain: Vec<&[u8]> = if with_issuer {
        vec![&c.leaf, &c.issuer]
    } else {
        vec![&c.leaf]
    };
    Staple::check(der, &chain, SystemTime::now())
}

#[test]
fn a_good_current_response_for_this_certificate_is_stapled() {
    let c = chain();
    let s = spec();
    let der = response(&c, s);
    for with_issuer in [true, false] {
        let staple = check(&c, der.clone(), with_issuer).unwrap();
        assert_eq!(staple.der, der);
        let next = s.next_update.unwrap();
        let next_secs = next.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            staple
                .next_update
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            next_secs
        );
        assert!(staple.is_current(SystemTime::now()));
        assert!(!staple.is_current(next));
    }
}

#[test]
fn wrong_revoked_stale_or_broken_responses_are_refused() {
    let c = chain();
    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    type Expected = fn(&OcspError) -> bool;
    let cases: Vec<(Spec, Expected)> = vec![
        (
            Spec {
                cert_status: 1,
                ..spec()
            },
            |e| *e == OcspError::Revoked,
        ),
        (
            Spec {
                cert_status: 2,
                ..spec()
            },
            |e| *e == OcspError::Unknown,
        ),
        (
            Spec {
                status: 3,
                ..spec()
            },
            |e| *e == OcspError::Unsuccessful("tryLater"),
        ),
        (
            Spec {
                wrong_serial: true,
                ..spec()
            },
            |e| *e == OcspError::OtherCertificate,
        ),
        (
            Spec {
                wrong_key: true,
                ..spec()
            },
            |e| *e == OcspError::OtherCertificate,
        ),
        (
            Spec {
                next_update: None,
                ..spec()
            },
            |e| *e == OcspError::NoNextUpdate,
        ),
        (
            Spec {
                this_update: now - 3 * day,
                next_update: Some(now - day),
                ..spec()
            },
            |e| matches!(e, OcspError::Expired(_)),
        ),
        (
            Spec {
                this_update: now + day,
                next_update: Some(now + 2 * day),
                ..spec()
            },
            |e| matches!(e, OcspError::NotYetValid(_)),
        ),
    ];
    for (i, (s, expected)) in cases.into_iter().enumerate() {
        let e = check(&c, response(&c, s), true).unwrap_err();
        assert!(expected(&e), "case {i}: {e}");
    }
    let good = response(&c, spec());
    assert_eq!(check(&c, Vec::new(), true).unwrap_err(), OcspError::Empty);
    assert!(matches!(
        check(&c, good[..good.len() - 1].to_vec(), true).unwrap_err(),
        OcspError::Malformed(_)
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        check(&c, trailing, true).unwrap_err(),
        OcspError::Malformed(_)
    ));
    // A PEM file, or a certificate where the response should be.
    assert!(matches!(
        check(&c, b"-----BEGIN OCSP".to_vec(), true).unwrap_err(),
        OcspError::Malformed(_)
    ));
    assert!(check(&c, c.leaf.clone(), true).is_err());
    // The same response checked against another certificate.
    let other = chain();
    assert_eq!(
        check(&other, good, false).unwrap_err(),
        OcspError::OtherCertificate
    );
}

#[test]
fn truncations_never_panic() {
    let c = chain();
    let good = response(&c, spec());
    for n in 0..good.len() {
        assert!(check(&c, good[..n].to_vec(), true).is_err());
    }
}
