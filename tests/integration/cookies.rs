//! The attributes of the session cookie and of its removal, read from the
//! raw `Set-Cookie` headers.

use rocket::http::{ContentType, Header, Status};
use rocket::serde::json::json;

use crate::common::{attributes, set_cookies, untracked, TestDb};
use crate::demo_app;

async fn login_headers(overrides: rocket::serde::json::Value) -> (Vec<String>, Option<String>) {
    let db = TestDb::new().await;
    let client = untracked(demo_app(&db, overrides)).await;
    let res = client
        .post("/api/login")
        .header(ContentType::JSON)
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    let cache = res.headers().get_one("Cache-Control").map(str::to_string);
    (set_cookies(&res), cache)
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[rocket::async_test]
async fn defaults_are_host_prefixed_secure_httponly_lax() {
    let (headers, cache) = login_headers(json!({})).await;
    assert_eq!(headers.len(), 1, "{headers:?}");
    let header = &headers[0];
    let value = header
        .strip_prefix("__Host-session=")
        .expect(header)
        .split(';')
        .next()
        .unwrap();
    assert_eq!(value.len(), 43, "a 256-bit id in base64url");
    let attrs = attributes(header);
    assert_eq!(attr(&attrs, "path"), Some("/"));
    assert_eq!(attr(&attrs, "samesite"), Some("Lax"));
    assert!(attr(&attrs, "secure").is_some(), "{header}");
    assert!(attr(&attrs, "httponly").is_some(), "{header}");
    assert!(attr(&attrs, "domain").is_none(), "{header}");
    assert_eq!(attr(&attrs, "max-age"), Some("1800"));
    assert!(
        attr(&attrs, "expires").is_some_and(|e| e.ends_with("GMT")),
        "{header}"
    );
    assert_eq!(cache.as_deref(), Some("no-store"));
}

#[rocket::async_test]
async fn configured_attributes_are_applied() {
    let (headers, _) = login_headers(json!({
        "cookie_name": "sid",
        "cookie_path": "/app",
        "cookie_domain": "example.test",
        "same_site": "strict",
        "http_only": false,
        "secure": false,
        "idle_timeout": 600,
    }))
    .await;
    let header = &headers[0];
    assert!(header.starts_with("sid="), "{header}");
    let attrs = attributes(header);
    assert_eq!(attr(&attrs, "path"), Some("/app"));
    assert_eq!(attr(&attrs, "domain"), Some("example.test"));
    assert_eq!(attr(&attrs, "samesite"), Some("Strict"));
    assert_eq!(attr(&attrs, "max-age"), Some("600"));
    assert!(attr(&attrs, "secure").is_none(), "{header}");
    assert!(attr(&attrs, "httponly").is_none(), "{header}");
}

#[rocket::async_test]
async fn same_site_none_is_sent_with_secure() {
    let (headers, _) = login_headers(json!({ "same_site": "none" })).await;
    let attrs = attributes(&headers[0]);
    assert_eq!(attr(&attrs, "samesite"), Some("None"));
    assert!(attr(&attrs, "secure").is_some());
}

#[rocket::async_test]
async fn lifetime_is_capped_by_the_absolute_timeout() {
    let (headers, _) = login_headers(json!({ "idle_timeout": 600, "absolute_timeout": 300 })).await;
    assert_eq!(attr(&attributes(&headers[0]), "max-age"), Some("300"));
}

#[rocket::async_test]
async fn removal_repeats_name_path_domain_and_secure() {
    let db = TestDb::new().await;
    let overrides = json!({ "cookie_name": "__Secure-sid", "cookie_path": "/app", "cookie_domain": "example.test" });
    let client = untracked(demo_app(&db, overrides)).await;
    let res = client
        .post("/api/login")
        .body(r#"{"user":"ann"}"#)
        .dispatch()
        .await;
    let id = crate::common::cookie_value(&res, "__Secure-sid").unwrap();

    let res = client
        .post("/api/logout")
        .header(Header::new("Cookie", format!("__Secure-sid={id}")))
        .dispatch()
        .await;
    assert_eq!(res.status(), Status::Ok);
    assert_eq!(res.headers().get_one("Cache-Control"), Some("no-store"));
    let headers = set_cookies(&res);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert!(headers[0].starts_with("__Secure-sid=;"), "{}", headers[0]);
    let attrs = attributes(&headers[0]);
    assert_eq!(attr(&attrs, "path"), Some("/app"));
    assert_eq!(attr(&attrs, "domain"), Some("example.test"));
    assert_eq!(attr(&attrs, "max-age"), Some("0"));
    assert_eq!(
        attr(&attrs, "expires"),
        Some("Thu, 01 Jan 1970 00:00:00 GMT")
    );
    assert!(attr(&attrs, "secure").is_some());
    assert!(attr(&attrs, "httponly").is_some());
    assert_eq!(attr(&attrs, "samesite"), Some("Lax"));
    assert_eq!(db.count().await, 0, "the row is deleted");
}
