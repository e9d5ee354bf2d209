//! Generic error responses: a status, a stable code and the request id.
//!
//! Nothing internal leaks here — no upstream address, error chain or
//! internal name — because error pages are read by whoever sent the request.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

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
        431 => "request_header_fields_too_large",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

/// A complete JSON response (phigate's own endpoints under `/.phigate/`).
pub async fn send_json(
    session: &mut Session,
    status: u16,
    body: &serde_json::Value,
    request_id: &str,
) -> pingora::Result<()> {
    let body = Bytes::from(body.to_string());
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "public, max-age=300")?;
    resp.insert_header("X-Request-Id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// A 302 to `location`, optionally setting a cookie. Never cached.
pub async fn redirect(
    session: &mut Session,
    location: &str,
    set_cookie: Option<&str>,
    request_id: &str,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(302, Some(6))?;
    resp.insert_header("Location", location)?;
    if let Some(c) = set_cookie {
        resp.insert_header("Set-Cookie", c)?;
    }
    resp.insert_header("Cache-Control", "no-store")?;
    resp.insert_header("Content-Length", "0")?;
    resp.insert_header("X-Request-Id", request_id)?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(None, true).await?;
    Ok(())
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

/// Writes a complete generated error response. `close` ends the connection
/// afterwards (framing errors: the rest of the stream cannot be trusted).
pub async fn send_error(
    session: &mut Session,
    status: u16,
    request_id: &str,
    close: bool,
) -> pingora::Result<()> {
    send_error_with(session, status, request_id, close, &[]).await
}

/// [`send_error`] with extra headers (e.g. `WWW-Authenticate`).
pub async fn send_error_with(
    session: &mut Session,
    status: u16,
    request_id: &str,
    close: bool,
    extra: &[(&'static str, String)],
) -> pingora::Result<()> {
    let body = error_body(status, request_id);
    let mut resp = ResponseHeader::build(status, Some(6 + extra.len()))?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    resp.insert_header("Content-Type", "application/json")?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "no-store")?;
    resp.insert_header("X-Request-Id", request_id)?;
    if close {
        resp.insert_header("Connection", "close")?;
        session.set_keepalive(None);
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
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

/// Writes an authorization denial.
pub async fn send_denial(
    session: &mut Session,
    style: DenialStyle,
    status: u16,
    detail: &str,
    request_id: &str,
    decision_header: Option<String>,
) -> pingora::Result<()> {
    let (body, content_type) = denial_body(style, status, detail, request_id);
    let mut resp = ResponseHeader::build(status, Some(6))?;
    resp.insert_header("Content-Type", content_type)?;
    resp.insert_header("Content-Length", body.len().to_string())?;
    resp.insert_header("Cache-Control", "no-store")?;
    resp.insert_header("X-Request-Id", request_id)?;
    if let Some(d) = decision_header {
        resp.insert_header("X-Phigate-Decision", d)?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
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
