//! Policy tests through the configured routes.
//!
//! A suite written for a legacy app names requests as the browser sends
//! them (`GET /portal/patients/p1/chart`). With a `phigate.toml` in hand
//! (`policy test --config`, and every start and reload of `serve`), such a
//! request is normalized, routed by host and longest prefix, and mapped by
//! that route's templates or FHIR grammar exactly as the proxy does it, so
//! a template's wrong `resource_type` or `patient_query` fails a test
//! instead of reaching a patient.

use super::mapping::{Mapping, MappingError, RequestView};
use super::runtime::RouteAuthz;
use crate::authn::config::AuthKind;
use crate::http::{normalize_path, NormalizedPath, PathPolicy};
use crate::proxy::config::RouteConfig;
use crate::proxy::{routing_view, Router};
use std::path::{Path, PathBuf};

/// A request target (path and query) normalized as `serve` normalizes it,
/// for the tools that map requests without serving them (`policy test`,
/// `policy explain`); a target `serve` would refuse is an error naming why.
pub fn normalize_target(target: &str) -> Result<NormalizedPath, String> {
    let policy = PathPolicy {
        max_len: usize::MAX,
        allow_double_slash: false,
    };
    normalize_path(target.as_bytes(), &policy).map_err(|e| {
        format!(
            "{target}: serve refuses this path before any route sees it ({}); write it as a client sends it, starting with `/`",
            e.reason()
        )
    })
}

/// The configured routes as policy tests see them.
pub struct Routes {
    router: Router<TestRoute>,
    /// The config's `[authorization] entities`: what `serve` decides on,
    /// and so what a routed suite decides on unless it names its own.
    pub entities: Option<PathBuf>,
}

struct TestRoute {
    name: String,
    /// `None` on a public route: nothing there is decided.
    authz: Option<RouteAuthz>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

/// A request mapped on the route that serves it.
pub struct Routed {
    /// The route's name (`context.route` in policies).
    pub route: String,
    /// The mapping, or why the proxy would refuse to decide it (a denial).
    pub mapping: Result<Mapping, MappingError>,
}

impl Routes {
    /// The routes of a config. A route whose authorization cannot be built
    /// is an error here as it is at start.
    pub fn from_config(routes: &[RouteConfig], entities: Option<&Path>) -> Result<Routes, String> {
        let mut entries = Vec::with_capacity(routes.len());
        for r in routes {
            let authz = match r.auth.kind {
                AuthKind::Public => None,
                _ => Some(
                    RouteAuthz::from_config(&r.authorization, &r.path_prefix)
                        .map_err(|e| format!("route `{}`: {e}", r.name))?,
                ),
            };
            entries.push((
                r.hosts.clone(),
                r.path_prefix.clone(),
                TestRoute {
                    name: r.name.clone(),
                    authz,
                },
            ));
        }
        Ok(Routes {
            router: Router::new(entries),
            entities: entities.map(Path::to_path_buf),
        })
    }

    /// Routes and maps one request. `target` is the path and query as the
    /// client sends it; `host` the `Host` header, if the case gives one.
    /// An `Err` is a mistake in the test (no route serves the path, the
    /// route is public, the path is one hygiene refuses), not a decision.
    pub fn map(&self, host: Option<&str>, view: &RequestView<'_>) -> Result<Routed, String> {
        let target = match view.query {
            Some(q) => format!("{}?{q}", view.path),
            None => view.path.to_string(),
        };
        let normalized = normalize_target(&target)?;
        // The Host as `serve` reads it: lowercased, port and trailing dot
        // removed, validated.
        let host = crate::proxy::request_host(host.map(str::as_bytes))
            .map_err(|_| "context.host is not a valid Host header value".to_string())?;
        let path = normalized.path();
        let route = self
            .router
            .route(host.as_deref(), &routing_view(path))
            .ok_or_else(|| match &host {
                Some(h) => format!("no route serves {path} on host {h}"),
                None => {
                    format!("no route serves {path} (give `context.host` for routes with `hosts`)")
                }
            })?;
        let Some(authz) = &route.authz else {
            return Err(format!(
                "route `{}` serving {path} is public: nothing there is decided",
                route.name
            ));
        };
        let view = RequestView {
            path,
            query: normalized.query(),
            ..*view
        };
        Ok(Routed {
            route: route.name.clone(),
            mapping: authz.map(&view),
        })
    }

    /// The records a write by id changes on the route serving `view`, for
    /// a case's `stored` records.
    pub fn stored_reads(
        &self,
        host: Option<&str>,
        view: &RequestView<'_>,
    ) -> Vec<(String, String)> {
        match self.map(host, view) {
            Ok(Routed {
                mapping: Ok(mapping),
                ..
            }) => mapping
                .stored_reads()
                .into_iter()
                .map(|(t, i)| (t.to_owned(), i.to_owned()))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::mapping::Action;

    fn routes(toml_routes: &str) -> Routes {
        #[derive(serde::Deserialize)]
        struct R {
            routes: Vec<RouteConfig>,
        }
        let r: R = toml::from_str(toml_routes).unwrap();
        Routes::from_config(&r.routes, None).unwrap()
    }

    fn get<'a>(path: &'a str, query: Option<&'a str>) -> RequestView<'a> {
        RequestView::get(path, query)
    }

    const ROUTES: &str = r#"
[[routes]]
name = "fhir"
path_prefix = "/fhir"
upstream = "ehr"
authorization = { mapping = "fhir" }

[[routes]]
name = "portal"
path_prefix = "/"
upstream = "portal"
authorization = { templates = [
  { path = "/patients/{patient}/chart", methods = ["GET"], resource_type = "Observation" },
  { path = "/search", methods = ["GET"], action = "search", resource_type = "Observation", patient_query = "pid" },
] }

[[routes]]
name = "static"
path_prefix = "/static"
upstream = "portal"
auth = { kind = "public" }
"#;

    #[test]
    fn requests_are_routed_and_mapped_as_the_proxy_does() {
        let r = routes(ROUTES);
        let routed = r.map(None, &get("/patients/p1/chart", None)).unwrap();
        assert_eq!(routed.route, "portal");
        let m = routed.mapping.unwrap();
        assert_eq!(m.requests[0].resource.resource_type, "Observation");
        assert_eq!(m.requests[0].patient.as_deref(), Some("p1"));

        let routed = r.map(None, &get("/search", Some("pid=p2&x=1"))).unwrap();
        let m = routed.mapping.unwrap();
        assert_eq!(m.requests[0].action, Action::Search);
        assert_eq!(m.requests[0].patient.as_deref(), Some("p2"));

        let routed = r.map(None, &get("/fhir/Patient/pat-1", None)).unwrap();
        assert_eq!(routed.route, "fhir");
        assert_eq!(
            routed.mapping.unwrap().requests[0].patient.as_deref(),
            Some("pat-1")
        );
    }

    #[test]
    fn a_path_no_template_matches_is_a_denial_not_a_test_error() {
        let r = routes(ROUTES);
        let routed = r.map(None, &get("/admin", None)).unwrap();
        assert_eq!(routed.route, "portal");
        assert!(routed.mapping.is_err());
    }

    #[test]
    fn mistakes_in_the_test_are_named() {
        let r = routes(ROUTES);
        let e = r.map(None, &get("/static/app.js", None)).err().unwrap();
        assert!(e.contains("public"), "{e}");
        let e = r
            .map(None, &get("/a/../patients/p1/chart", None))
            .err()
            .unwrap();
        assert!(e.contains("refuses"), "{e}");
        let only_fhir = routes(
            r#"
[[routes]]
name = "fhir"
hosts = ["ehr.example"]
path_prefix = "/fhir"
upstream = "ehr"
authorization = { mapping = "fhir" }
"#,
        );
        let e = only_fhir
            .map(None, &get("/fhir/Patient/1", None))
            .err()
            .unwrap();
        assert!(e.contains("context.host"), "{e}");
        assert!(only_fhir
            .map(Some("EHR.example"), &get("/fhir/Patient/1", None))
            .is_ok());
    }
}
