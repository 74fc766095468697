//! The dashboard: Zuul's web UI layout (`/t/{tenant}/status`, `builds`, `build/{uuid}`,
//! `stream/{uuid}?logfile=console.log`, ...) served from assets embedded in the binary.
//!
//! Every dashboard page is the same small HTML shell (`dashboard/index.html`, with the style
//! sheet inlined so the first paint waits for no other request); `dashboard/app.js` reads the
//! path and renders the page from the REST API and the console stream. There is no build
//! step and no framework: the files under `web/dashboard/` are what the browser gets.
//!
//! # Why it is built this way
//! First paint of the status page must be fast, so the shell is a few kilobytes, the script
//! is cached for good (its URL carries a hash of its content) and the status page waits on
//! nothing but the status document.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_TEMPLATE: &str = include_str!("../dashboard/index.html");
const STYLE: &str = include_str!("../dashboard/style.css");
const APP_JS: &str = include_str!("../dashboard/app.js");

/// A short hash of the script, in its URL so a new binary's script is never a stale cached one.
static APP_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    APP_JS.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
});

/// The HTML shell with the style sheet inlined and the script's versioned URL.
static INDEX: LazyLock<String> = LazyLock::new(|| {
    INDEX_TEMPLATE
        .replace("{{style}}", STYLE)
        .replace("{{version}}", &APP_VERSION)
});

/// The dashboard's routes: the pages under `/t/{tenant}/`, the tenant list at `/`, and the
/// script at `/dashboard/app.js`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/t/{tenant}", get(page))
        .route("/t/{tenant}/", get(page))
        .route("/t/{tenant}/{*page}", get(page))
        .route("/dashboard/app.js", get(app_js))
}

async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The shell names the current script's hash: always revalidate it.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        INDEX.as_str(),
    )
        .into_response()
}

async fn app_js(headers: HeaderMap) -> Response {
    let etag = format!("\"{}\"", *APP_VERSION);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let cache = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        )],
        cache,
        APP_JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_inlines_the_style_and_names_the_versioned_script() {
        assert!(!INDEX.contains("{{"), "a placeholder is left: {}", *INDEX);
        assert!(INDEX.contains(".progress"), "style sheet not inlined");
        assert!(INDEX.contains(&format!("/dashboard/app.js?v={}", *APP_VERSION)));
        // First paint: the shell stays small.
        assert!(INDEX.len() < 16 * 1024, "shell is {} bytes", INDEX.len());
    }
}
