//! The session cookie: reading it from a request, and building it and its
//! removal with the configured attributes.

use rocket::http::{Cookie, SameSite as CookieSameSite};
use rocket::time::{Duration, OffsetDateTime};
use rocket::Request;

use crate::config::{Config, SameSite};
use crate::store::Expiry;

/// The most cookie values of our name considered per request. Browsers send
/// several when cookies of one name exist for different paths or domains.
const MAX_CANDIDATES: usize = 4;

/// Every value of the session cookie the request carried, in header order.
///
/// Rocket's jar keeps only the last cookie of a name, so the raw `Cookie`
/// headers are read; the jar is the fallback when there is no raw header
/// (Rocket's local client adds its cookies to the jar only).
pub(crate) fn values<'r>(req: &'r Request<'_>, name: &str) -> Vec<&'r str> {
    let mut found = Vec::new();
    let mut saw_header = false;
    for header in req.headers().get("Cookie") {
        saw_header = true;
        for pair in header.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            if key.trim() == name {
                found.push(value.trim().trim_matches('"'));
            }
        }
    }
    if !saw_header {
        if let Some(cookie) = req.cookies().get(name) {
            found.push(cookie.value());
        }
    }
    found.truncate(MAX_CANDIDATES);
    found
}

/// The `Set-Cookie` value that stores `value` until `expiry`.
pub(crate) fn issue(config: &Config, value: &str, expiry: Expiry) -> String {
    let expires =
        OffsetDateTime::from_unix_timestamp(expiry.unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    build(
        config,
        value.to_string(),
        Duration::seconds(expiry.max_age.max(0)),
        expires,
    )
}

/// The `Set-Cookie` value that removes the cookie: same name, Path, Domain,
/// Secure and the rest, `Max-Age=0` and an `Expires` in the past.
pub(crate) fn removal(config: &Config) -> String {
    build(
        config,
        String::new(),
        Duration::ZERO,
        OffsetDateTime::UNIX_EPOCH,
    )
}

fn build(config: &Config, value: String, max_age: Duration, expires: OffsetDateTime) -> String {
    let same_site = match config.same_site {
        SameSite::Strict => CookieSameSite::Strict,
        SameSite::Lax => CookieSameSite::Lax,
        SameSite::None => CookieSameSite::None,
    };
    let mut cookie = Cookie::build((config.cookie_name().to_string(), value))
        .path(config.cookie_path.clone())
        .secure(config.secure)
        .http_only(config.http_only)
        .same_site(same_site)
        .max_age(max_age)
        .expires(expires);
    if let Some(domain) = &config.cookie_domain {
        cookie = cookie.domain(domain.clone());
    }
    cookie.build().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_repeats_the_attributes() {
        let config = Config {
            cookie_domain: Some("example.com".into()),
            cookie_path: "/app".into(),
            ..Config::default()
        };
        let header = removal(&config);
        for part in [
            "session=",
            "Path=/app",
            "Domain=example.com",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=0",
            "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        ] {
            assert!(header.contains(part), "{part} missing in {header}");
        }
    }

    #[test]
    fn issue_sets_both_lifetimes() {
        let header = issue(
            &Config::default(),
            "abc",
            Expiry {
                max_age: 90,
                unix: 86_400,
            },
        );
        assert!(header.starts_with("__Host-session=abc;"), "{header}");
        assert!(header.contains("Max-Age=90"), "{header}");
        assert!(
            header.contains("Expires=Fri, 02 Jan 1970 00:00:00 GMT"),
            "{header}"
        );
    }
}
