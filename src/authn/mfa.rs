//! Authentication strength: is this MFA, and is it recent enough?
//!
//! MFA is read from the token's `amr` (RFC 8176 method values) and/or `acr`,
//! against per-issuer lists, and freshness from `auth_time`. When a route
//! needs more than the principal has, the answer is a step-up (RFC 9470):
//! a challenge for APIs, a re-login with `acr_values`/`max_age` for browsers.

use serde::{Deserialize, Serialize};

/// Which `amr`/`acr` values count as multi-factor for an issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaRules {
    /// Any of these in `amr` means MFA. Default `["mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "iris"]`
    /// minus nothing: RFC 8176 values that are a second factor or imply one.
    pub amr_values: Vec<String>,
    /// Any of these as `acr` means MFA. Default: none.
    pub acr_values: Vec<String>,
    /// The `acr_values` to ask the IdP for when stepping up. Default: `acr_values`.
    pub step_up_acr_values: Vec<String>,
}

impl Default for MfaRules {
    fn default() -> Self {
        Self {
            amr_values: ["mfa", "otp", "hwk", "swk", "sms", "fpt", "face", "iris"]
                .map(String::from)
                .to_vec(),
            acr_values: Vec::new(),
            step_up_acr_values: Vec::new(),
        }
    }
}

impl MfaRules {
    pub fn satisfied(&self, amr: &[String], acr: Option<&str>) -> bool {
        amr.iter().any(|m| self.amr_values.contains(m))
            || acr.is_some_and(|a| self.acr_values.iter().any(|v| v == a))
    }

    /// What to ask the IdP for on step-up.
    pub fn step_up_acr(&self) -> &[String] {
        if self.step_up_acr_values.is_empty() {
            &self.acr_values
        } else {
            &self.step_up_acr_values
        }
    }
}

/// What a route demands of authentication strength.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Strength {
    pub require_mfa: bool,
    /// Maximum seconds since the last active authentication.
    pub max_auth_age: Option<u64>,
}

/// Why the principal must authenticate again, more strongly or more recently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUp {
    pub reason: StepUpReason,
    pub acr_values: Vec<String>,
    pub max_age: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepUpReason {
    MfaRequired,
    AuthenticationTooOld,
    /// `auth_time` is needed for a max age and the token does not carry it.
    AuthTimeMissing,
}

impl StepUpReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StepUpReason::MfaRequired => "mfa_required",
            StepUpReason::AuthenticationTooOld => "authentication_too_old",
            StepUpReason::AuthTimeMissing => "auth_time_missing",
        }
    }

    fn description(self) -> &'static str {
        match self {
            StepUpReason::MfaRequired => "multi-factor authentication is required",
            StepUpReason::AuthenticationTooOld => "a more recent authentication is required",
            StepUpReason::AuthTimeMissing => "the token does not say when the user authenticated",
        }
    }
}

/// Checks a principal against a route's demands at time `now` (Unix seconds).
pub fn check_strength(
    principal: &super::Principal,
    need: Strength,
    rules: &MfaRules,
    now: u64,
) -> Result<(), StepUp> {
    let step_up = |reason| StepUp {
        reason,
        acr_values: if need.require_mfa {
            rules.step_up_acr().to_vec()
        } else {
            Vec::new()
        },
        max_age: need.max_auth_age,
    };
    if need.require_mfa && !principal.mfa {
        return Err(step_up(StepUpReason::MfaRequired));
    }
    if let Some(max) = need.max_auth_age {
        match principal.auth_age(now) {
            None => return Err(step_up(StepUpReason::AuthTimeMissing)),
            Some(age) if age > max => return Err(step_up(StepUpReason::AuthenticationTooOld)),
            Some(_) => {}
        }
    }
    Ok(())
}

impl StepUp {
    /// The RFC 9470 `WWW-Authenticate` value for an API client.
    pub fn challenge(&self) -> String {
        let mut out = format!(
            "Bearer error=\"insufficient_user_authentication\", error_description=\"{}\"",
            self.reason.description()
        );
        if !self.acr_values.is_empty() {
            out.push_str(&format!(
                ", acr_values=\"{}\"",
                quoted_safe(&self.acr_values.join(" "))
            ));
        }
        if let Some(age) = self.max_age {
            out.push_str(&format!(", max_age={age}"));
        }
        out
    }
}

/// Drops characters that would break out of a quoted-string.
fn quoted_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::{AuthMethod, Principal};

    fn person(mfa: bool, auth_time: Option<u64>) -> Principal {
        let mut p = Principal::service("alice", "https://idp", AuthMethod::Bearer, vec![]);
        p.mfa = mfa;
        p.auth_time = auth_time;
        p
    }

    fn rules() -> MfaRules {
        MfaRules {
            acr_values: vec!["urn:phigate:mfa".into()],
            ..MfaRules::default()
        }
    }

    #[test]
    fn amr_or_acr_counts() {
        let r = rules();
        assert!(r.satisfied(&["pwd".into(), "otp".into()], None));
        assert!(r.satisfied(&["pwd".into()], Some("urn:phigate:mfa")));
        assert!(!r.satisfied(&["pwd".into()], Some("urn:phigate:pwd")));
        assert!(!r.satisfied(&[], None));
    }

    #[test]
    fn mfa_and_age_are_enforced() {
        let need = Strength {
            require_mfa: true,
            max_auth_age: Some(300),
        };
        let r = rules();
        assert_eq!(
            check_strength(&person(false, Some(1000)), need, &r, 1000)
                .unwrap_err()
                .reason,
            StepUpReason::MfaRequired
        );
        assert_eq!(
            check_strength(&person(true, Some(100)), need, &r, 1000)
                .unwrap_err()
                .reason,
            StepUpReason::AuthenticationTooOld
        );
        assert_eq!(
            check_strength(&person(true, None), need, &r, 1000)
                .unwrap_err()
                .reason,
            StepUpReason::AuthTimeMissing
        );
        assert!(check_strength(&person(true, Some(900)), need, &r, 1000).is_ok());
        assert!(check_strength(&person(false, None), Strength::default(), &r, 1000).is_ok());
    }

    #[test]
    fn rfc9470_challenge() {
        let s = StepUp {
            reason: StepUpReason::MfaRequired,
            acr_values: vec!["urn:phigate:mfa".into()],
            max_age: Some(300),
        };
        assert_eq!(
            s.challenge(),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"multi-factor authentication is required\", acr_values=\"urn:phigate:mfa\", max_age=300"
        );
    }
}
