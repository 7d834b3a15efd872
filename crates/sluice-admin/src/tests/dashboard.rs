//! The dashboard's files: served without a token, with their content types
//! and the strict Content-Security-Policy, referring only to each other;
//! while the API they read still wants the admin token.

use super::{assert_error, Fixture, TOKEN};
use crate::dashboard::CONTENT_SECURITY_POLICY;
use axum::http::{header, HeaderMap, Method, StatusCode};

fn header_of(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// The values of `attr="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// The module paths of `import … from "…"` lines in `js`.
fn imports(js: &str) -> Vec<&str> {
    js.lines()
        .filter(|l| l.starts_with("import "))
        .filter_map(|l| l.split('"').nth(1))
        .collect()
}

#[tokio::test]
async fn dashboard_files_are_served_with_their_types_and_a_strict_csp() {
    let f = Fixture::start().await;

    let (status, headers, page) = f.send_raw(Method::GET, "/dashboard", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        header_of(&headers, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let page = String::from_utf8(page).expect("UTF-8 page");
    assert!(page.contains("<form id=\"login-form\""), "no login form");

    // Every script is a file of ours (no inline code), every link and
    // script points into /dashboard/, never to another origin.
    assert!(
        page.match_indices("<script").count() == attribute_values(&page, "src").len(),
        "an inline script in the page"
    );
    let mut files: Vec<String> = attribute_values(&page, "src")
        .into_iter()
        .chain(
            attribute_values(&page, "href")
                .into_iter()
                .filter(|h| h.ends_with(".css")),
        )
        .map(str::to_string)
        .collect();
    assert!(
        files.len() >= 2,
        "expected a script and a stylesheet: {files:?}"
    );
    let mut seen = Vec::new();
    while let Some(path) = files.pop() {
        assert!(path.starts_with("/dashboard/"), "{path} is not ours");
        if seen.contains(&path) {
            continue;
        }
        let (status, headers, body) = f.send_raw(Method::GET, &path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let body = String::from_utf8(body).expect("UTF-8 asset");
        let expected = if path.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(
            header_of(&headers, header::CONTENT_TYPE),
            expected,
            "{path}"
        );
        assert_eq!(
            header_of(&headers, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(
            header_of(&headers, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        for module in imports(&body) {
            let module = module
                .strip_prefix("./")
                .unwrap_or_else(|| panic!("{path} imports {module} from elsewhere"));
            files.push(format!("/dashboard/{module}"));
        }
        seen.push(path);
    }
    assert!(
        seen.len() >= 4,
        "app, its modules and the stylesheet: {seen:?}"
    );

    assert_eq!(
        header_of(&headers, header::CONTENT_SECURITY_POLICY),
        CONTENT_SECURITY_POLICY
    );
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));

    for from in ["/", "/dashboard/"] {
        let (status, headers, _) = f.send_raw(Method::GET, from, None, None).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{from}");
        assert_eq!(header_of(&headers, header::LOCATION), "/dashboard");
    }
    let (status, _, body) = f
        .send(Method::GET, "/dashboard/missing.js", None, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "not_found", None);
    f.stop().await;
}

#[tokio::test]
async fn the_api_behind_the_dashboard_still_wants_the_admin_token() {
    let f = Fixture::start().await;
    for token in [None, Some("not-the-token")] {
        let (status, headers, body) = f.send(Method::GET, "/admin/v1/cluster", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(header_of(&headers, header::WWW_AUTHENTICATE), "Bearer");
        assert_error(&body, "unauthorized", None);
    }
    let (status, _, _) = f
        .send(Method::GET, "/admin/v1/cluster", Some(TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    f.stop().await;
}
