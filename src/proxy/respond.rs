//! Responses phigate writes itself: generated errors, denials, redirects,
//! JSON. Nothing internal leaks here — no upstream address, error chain or
//! internal name — because error pages are read by whoever sent the request.

use super::body::ResponseBody;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION, SET_COOKIE,
};
use http::{Response, StatusCode};

/// A response phigate generated.
pub type Generated = Response<ResponseBody>;

/// A journey that ended before the upstream: phigate's answer, and why
/// (the reason recorded at the exit and counted).
pub struct Stop {
    pub response: Box<Generated>,
    pub reason: &'static str,
}

impl Stop {
    pub fn new(response: Generated, reason: &'static str) -> Stop {
        Stop {
            response: Box::new(response),
            reason,
        }
    }
}

fn build(
    status: u16,
    content_type: Option<&'static str>,
    body: Bytes,
    cache: &'static str,
) -> Generated {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

/// The stable machine-readable code for a status phigate generates itself.
pub fn error_code(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        431 => "request_header_fields_too_large",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

/// The JSON body of a generated error.
pub fn error_body(status: u16, request_id: &str) -> Bytes {
    let body = serde_json::json!({
        "error": error_code(status),
        "status": status,
        "request_id": request_id,
    });
    Bytes::from(body.to_string())
}

/// How a route wants its denials worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialStyle {
    /// RFC 9457 `application/problem+json`.
    Problem,
    /// A FHIR `OperationOutcome` (`application/fhir+json`).
    Fhir,
}

/// The body of an authorization denial: a non-revealing `detail` (never
/// the policy, the patient or request data) and the request id.
pub fn denial_body(
    style: DenialStyle,
    status: u16,
    detail: &str,
    request_id: &str,
) -> (Bytes, &'static str) {
    let detail = format!("{detail} (request id {request_id})");
    match style {
        DenialStyle::Problem => {
            let body = serde_json::json!({
                "type": "about:blank",
                "title": match status {
                    400 => "Bad Request",
                    403 => "Forbidden",
                    413 => "Content Too Large",
                    415 => "Unsupported Media Type",
                    _ => "Service Unavailable",
                },
                "status": status,
                "detail": detail,
                "request_id": request_id,
            });
            (Bytes::from(body.to_string()), "application/problem+json")
        }
        DenialStyle::Fhir => {
            let code = match status {
                403 => "forbidden",
                400 => "invalid",
                413 => "too-costly",
                415 => "not-supported",
                _ => "transient",
            };
            let body = serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": code, "diagnostics": detail}],
            });
            (Bytes::from(body.to_string()), "application/fhir+json")
        }
    }
}

/// A complete JSON response (phigate's own endpoints under `/.phigate/`).
/// `cache` is the `Cache-Control` value.
pub fn json(status: u16, body: &serde_json::Value, cache: &'static str) -> Generated {
    build(
        status,
        Some("application/json"),
        Bytes::from(body.to_string()),
        cache,
    )
}

/// A page phigate shows itself (never cached).
pub fn html(status: u16, body: &'static str) -> Generated {
    build(
        status,
        Some("text/html; charset=utf-8"),
        Bytes::from_static(body.as_bytes()),
        "no-store",
    )
}

/// A 302 to `location`, optionally setting a cookie. Never cached.
pub fn redirect(location: &str, set_cookie: Option<&str>) -> Generated {
    let mut resp = build(302, None, Bytes::new(), "no-store");
    let h = resp.headers_mut();
    match HeaderValue::from_str(location) {
        Ok(v) => {
            h.insert(LOCATION, v);
        }
        // A location that is not a header value is never sent: refuse.
        Err(_) => return error(500),
    }
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(SET_COOKIE, c);
    }
    resp
}

/// A generated error: the stable code and the request id (added at the
/// exit) as JSON.
pub fn error(status: u16) -> Generated {
    let mut resp = build(status, Some("application/json"), Bytes::new(), "no-store");
    resp.extensions_mut().insert(Fill::Error);
    resp
}

/// [`error`] with extra headers (e.g. `WWW-Authenticate`).
pub fn error_with(status: u16, extra: &[(HeaderName, String)]) -> Generated {
    let mut resp = error(status);
    for (name, value) in extra {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(name.clone(), v);
        }
    }
    resp
}

/// Marks a response as the last on its connection.
pub fn close(resp: &mut Generated) {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}

/// An authorization denial (its body is filled in at the exit, where the
/// request id is known).
pub fn denial(
    style: DenialStyle,
    status: u16,
    detail: impl Into<std::borrow::Cow<'static, str>>,
) -> Generated {
    let detail = detail.into();
    let mut resp = build(status, None, Bytes::new(), "no-store");
    resp.extensions_mut().insert(Fill::Denial { style, detail });
    resp
}

/// A generated body that names the request id, written at the exit.
#[derive(Debug, Clone)]
enum Fill {
    Error,
    Denial {
        style: DenialStyle,
        detail: std::borrow::Cow<'static, str>,
    },
}

/// Fills a generated body that needs the request id: errors (empty JSON
/// bodies) and denials.
pub fn finish(resp: &mut Generated, request_id: &str) {
    let status = resp.status().as_u16();
    match resp.extensions_mut().remove::<Fill>() {
        Some(Fill::Denial { style, detail }) => {
            let (body, ct) = denial_body(style, status, &detail, request_id);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            *resp.body_mut() = ResponseBody::full(body);
        }
        Some(Fill::Error) => {
            *resp.body_mut() = ResponseBody::full(error_body(status, request_id));
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_are_problem_json_or_operation_outcome() {
        let (b, ct) = denial_body(DenialStyle::Problem, 403, "not permitted by policy", "r1");
        assert_eq!(ct, "application/problem+json");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["status"], 403);
        assert_eq!(v["request_id"], "r1");
        let (b, ct) = denial_body(DenialStyle::Fhir, 403, "not permitted by policy", "r1");
        assert_eq!(ct, "application/fhir+json");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["code"], "forbidden");
        assert!(v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("r1"));
    }

    #[test]
    fn body_is_generic_json() {
        let b = error_body(502, "req-1");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"], "bad_gateway");
        assert_eq!(v["status"], 502);
        assert_eq!(v["request_id"], "req-1");
        assert_eq!(v.as_object().unwrap().len(), 3);
    }
}
