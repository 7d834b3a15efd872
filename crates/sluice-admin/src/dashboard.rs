//! The web dashboard: static HTML, CSS and JavaScript compiled into the
//! binary and served at `/dashboard` on the admin listener.
//!
//! The files (in `dashboard/`) need no build step and load nothing from
//! elsewhere. The page itself holds no data, so it is served without a
//! token; the script asks for the admin token, keeps it in the tab's session
//! storage and reads everything through the authenticated `/admin/v1/` API
//! (and this node's public `/metrics` for breaker states). Every response
//! carries a Content-Security-Policy that allows scripts, styles and
//! requests from this origin only and no inline script.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// What the dashboard may load: its own files and its own API, nothing
/// inline, nothing from another origin, and no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

const INDEX: Asset = Asset::new("/dashboard", HTML, include_str!("dashboard/index.html"));

/// The page's stylesheet and script modules (`app.js` imports the others).
const ASSETS: [Asset; 6] = [
    Asset::new(
        "/dashboard/dashboard.css",
        CSS,
        include_str!("dashboard/dashboard.css"),
    ),
    Asset::new("/dashboard/app.js", JS, include_str!("dashboard/app.js")),
    Asset::new("/dashboard/api.js", JS, include_str!("dashboard/api.js")),
    Asset::new(
        "/dashboard/chart.js",
        JS,
        include_str!("dashboard/chart.js"),
    ),
    Asset::new(
        "/dashboard/metrics.js",
        JS,
        include_str!("dashboard/metrics.js"),
    ),
    Asset::new(
        "/dashboard/format.js",
        JS,
        include_str!("dashboard/format.js"),
    ),
];

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, body: &'static str) -> Asset {
        Asset {
            path,
            content_type,
            body,
        }
    }

    fn respond(&self) -> Response {
        let mut response = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body,
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        // Small files, and an upgraded node must serve its new script at once.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }
}

/// `/dashboard`, its files, and `/` redirecting to it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new()
        .route("/", get(|| async { Redirect::to(INDEX.path) }))
        .route("/dashboard/", get(|| async { Redirect::to(INDEX.path) }))
        .route(INDEX.path, get(|| async { INDEX.respond() }));
    for asset in &ASSETS {
        router = router.route(asset.path, get(move || async move { asset.respond() }));
    }
    router
}
