//! The routing table and the hygiene settings, built once from config.

use super::config::{PipelineConfig, RouteConfig};
use super::respond::DenialStyle;
use super::router::Router;
use super::{Pool, PoolError};
use crate::authn::RouteAuth;
use crate::authz::RouteAuthz;
use crate::http::{IdentityHeaderRules, PathPolicy, TrustedProxies};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A configured route with its upstream pool.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub pool: Arc<Pool>,
    /// Index of `pool` among all pools (each worker's clients are indexed
    /// the same way).
    pub pool_index: usize,
    pub max_body: u64,
    pub websocket: bool,
    pub allow_double_slash: bool,
    pub preserve_host: bool,
    /// The route names its hosts, so the request's host was on a list.
    pub hosts_listed: bool,
    pub auth: RouteAuth,
    /// How requests are authorized; `None` on public routes.
    pub authz: Option<RouteAuthz>,
    pub denial_style: DenialStyle,
    /// The response phase's redaction, when the route has one.
    pub redaction: Option<super::redaction::RouteRedaction>,
    /// Its request counters and latency histogram.
    pub metrics: super::exit::RouteMetrics,
    /// The `Strict-Transport-Security` value it sends over TLS, if it owns
    /// the header.
    pub hsts: Option<http::HeaderValue>,
}

/// Hygiene settings resolved from config once, used on every request.
pub struct Hygiene {
    pub strict_path: PathPolicy,
    pub lenient_path: PathPolicy,
    pub max_uri: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub identity: IdentityHeaderRules,
    pub trusted: TrustedProxies,
    pub body_timeout: Duration,
    pub max_requests_per_connection: u32,
    /// A WebSocket tunnel closes after this long with no bytes either way.
    pub tunnel_idle: Duration,
}

impl Hygiene {
    /// `identity` names the headers phigate sends upstream: whatever they
    /// are called, a client's own copies are always stripped.
    pub fn from_config(
        h: &crate::http::config::HygieneConfig,
        identity: &crate::authn::config::IdentityHeadersConfig,
    ) -> Hygiene {
        let own = [
            &identity.user,
            &identity.name,
            &identity.email,
            &identity.roles,
            &identity.assertion,
        ];
        let identity = IdentityHeaderRules::with_additional(
            h.strip_headers
                .iter()
                .chain(own)
                .map(|s| s.to_ascii_lowercase()),
            h.strip_header_prefixes
                .iter()
                .map(|s| s.to_ascii_lowercase()),
        );
        Hygiene {
            strict_path: PathPolicy {
                max_len: h.max_path_length,
                allow_double_slash: false,
            },
            lenient_path: PathPolicy {
                max_len: h.max_path_length,
                allow_double_slash: true,
            },
            max_uri: h.max_uri_length,
            max_header_bytes: h.max_header_bytes.bytes() as usize,
            max_headers: h.max_headers,
            identity,
            trusted: TrustedProxies::new(h.trusted_proxies.clone()),
            body_timeout: h.client_body_timeout.get(),
            max_requests_per_connection: h.max_requests_per_connection.max(1),
            tunnel_idle: h.keepalive_timeout.get(),
        }
    }
}

/// The routing table and the pools it routes to (in name order).
pub type Table = (Router<Arc<Route>>, Vec<Arc<Pool>>);

/// Builds the pools (in name order) and the routing table.
pub fn build(config: &PipelineConfig<'_>) -> Result<Table, PoolError> {
    let mut pools = BTreeMap::new();
    for (name, u) in config.upstreams {
        pools.insert(name.clone(), Arc::new(Pool::from_config(name, u)?));
    }
    let index: BTreeMap<&str, usize> = pools
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let routes = config.routes.iter().map(|r: &RouteConfig| {
        let missing = || PoolError {
            pool: r.upstream.clone(),
            reason: "not defined".into(),
        };
        let pool = pools.get(&r.upstream).cloned().ok_or_else(missing)?;
        let pool_index = *index.get(r.upstream.as_str()).ok_or_else(missing)?;
        Ok((
            r.hosts.clone(),
            r.path_prefix.clone(),
            Arc::new(Route {
                name: r.name.clone(),
                pool,
                pool_index,
                max_body: r.max_body.bytes(),
                websocket: r.websocket,
                allow_double_slash: r.allow_double_slash,
                preserve_host: r.preserve_host,
                hosts_listed: !r.hosts.is_empty(),
                auth: RouteAuth::from_config(&r.name, &r.auth, config.browser),
                authz: match r.auth.kind {
                    crate::authn::config::AuthKind::Public => None,
                    _ => Some(
                        RouteAuthz::from_config(&r.authorization, &r.path_prefix).map_err(
                            |reason| PoolError {
                                pool: r.name.clone(),
                                reason,
                            },
                        )?,
                    ),
                },
                redaction: match &r.redaction {
                    None => None,
                    Some(c) => Some(
                        super::redaction::RouteRedaction::from_config(
                            c,
                            &r.authorization,
                            &r.path_prefix,
                            config.upstreams.get(&r.upstream),
                        )
                        .map_err(|reason| PoolError {
                            pool: r.name.clone(),
                            reason: format!("redaction: {reason}"),
                        })?,
                    ),
                },
                denial_style: match r.authorization.mapping {
                    crate::authz::config::MappingKind::Fhir => DenialStyle::Fhir,
                    crate::authz::config::MappingKind::Templates => DenialStyle::Problem,
                },
                metrics: super::exit::RouteMetrics::new(&r.name),
                hsts: super::hsts::for_route(r),
            }),
        ))
    });
    let router = Router::new(routes.collect::<Result<Vec<_>, PoolError>>()?);
    Ok((router, pools.into_values().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_identity_headers_are_stripped_from_clients() {
        let ih = crate::authn::config::IdentityHeadersConfig {
            email: "X-Employee-Email".into(),
            user: "Remote-Clinician".into(),
            ..Default::default()
        };
        let h = Hygiene::from_config(&crate::http::config::HygieneConfig::default(), &ih);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-employee-email", "a@b".parse().unwrap());
        headers.insert("remote-clinician", "drsmith".parse().unwrap());
        let strip = crate::http::headers_to_strip(&headers, &h.identity, false);
        assert_eq!(strip.len(), 2, "{strip:?}");
    }
}
