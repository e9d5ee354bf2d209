//! Authentication costs per request: bearer JWT verification (RS256 and
//! ES256) with a cold and a warm verified-token cache, and session-cookie
//! decryption. Run: `cargo bench --bench authn`.

use async_trait::async_trait;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use phigate::authn::bearer::{BearerVerifier, Issuer, IssuerRules};
use phigate::authn::cookie::Keyring;
use phigate::authn::jwks::{CachePolicy, JwksCache, JwksSource};
use phigate::authn::{ClaimMapping, MfaRules};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

struct Static(JwkSet);

#[async_trait]
impl JwksSource for Static {
    async fn fetch(&self) -> Result<JwkSet, String> {
        Ok(self.0.clone())
    }
}

const ISS: &str = "https://idp.bench";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// (signing key, JWK set) for RS256 (2048-bit) and ES256.
fn keys() -> (EncodingKey, EncodingKey, JwkSet) {
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa key");
    let rsa_pem = rsa_key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .expect("pem");
    let ec = rcgen::KeyPair::generate().expect("ec key");
    let public = ec.public_key_raw();
    let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "rsa", "alg": "RS256", "use": "sig",
         "n": b64(&rsa_key.n().to_bytes_be()), "e": b64(&rsa_key.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256", "use": "sig",
         "x": b64(&public[1..33]), "y": b64(&public[33..65])},
    ]}))
    .expect("jwks");
    (
        EncodingKey::from_rsa_pem(rsa_pem.as_bytes()).expect("rsa encoding key"),
        EncodingKey::from_ec_der(&ec.serialize_der()),
        jwks,
    )
}

fn verifier(jwks: JwkSet) -> BearerVerifier {
    let issuer = Issuer {
        name: "bench".into(),
        rules: IssuerRules {
            issuer: ISS.into(),
            audiences: vec!["phigate".into()],
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            leeway: Duration::from_secs(60),
            required_typ: None,
            claims: ClaimMapping::default(),
            mfa: MfaRules::default(),
        },
        keys: JwksCache::new(
            Box::new(Static(jwks)),
            CachePolicy {
                ttl: Duration::from_secs(3600),
                min_refresh_interval: Duration::from_secs(30),
                max_stale: Duration::from_secs(3600),
            },
        ),
    };
    BearerVerifier::new(vec![Arc::new(issuer)], 1_000_000)
}

fn token(key: &EncodingKey, alg: Algorithm, kid: &str, n: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": ISS, "aud": "phigate", "sub": format!("user-{n}"), "iat": now, "exp": now + 3600,
        "name": "Bench User", "email": "bench@hospital.test", "roles": ["care_manager", "nurse"],
        "amr": ["pwd", "otp"], "auth_time": now, "scope": "openid fhir",
    });
    jsonwebtoken::encode(&h, &claims, key).expect("sign")
}

fn bearer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (rsa, ec, jwks) = keys();
    let v = verifier(jwks);
    let now = jsonwebtoken::get_current_timestamp();
    for (name, key, alg, kid) in [
        ("rs256", &rsa, Algorithm::RS256, "rsa"),
        ("es256", &ec, Algorithm::ES256, "ec"),
    ] {
        // Warm: the same token every time (what an API client sends).
        let warm = token(key, alg, kid, 0);
        rt.block_on(v.verify(&warm, now)).expect("valid");
        c.bench_function(&format!("bearer/{name}/warm"), |b| {
            b.iter(|| rt.block_on(v.verify(black_box(&warm), now)).expect("valid"))
        });
        // Cold: a token never seen before (signature check every time).
        let mut n = 1u64;
        c.bench_function(&format!("bearer/{name}/cold"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    token(key, alg, kid, n)
                },
                |t| rt.block_on(v.verify(black_box(&t), now)).expect("valid"),
                BatchSize::SmallInput,
            )
        });
    }
}

fn cookie(c: &mut Criterion) {
    let ring = Keyring::random();
    let sealed = ring.seal(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    c.bench_function("session_cookie/open", |b| {
        b.iter(|| ring.open(black_box(&sealed)).expect("opens"))
    });
}

criterion_group!(benches, bearer, cookie);
criterion_main!(benches);
