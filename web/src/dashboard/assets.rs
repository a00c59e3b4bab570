//! The script and style sheet, compiled into the binary.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// The dashboard's script: plain JavaScript, no libraries.
const APP_JS: &str = include_str!("assets/app.js");
/// The dashboard's style sheet.
const APP_CSS: &str = include_str!("assets/app.css");

/// A short hash of both assets: pages link `app.js?v=HASH`, so a new build's assets are fetched
/// fresh while unchanged ones stay cached.
pub(super) fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        // FNV-1a, 64 bits: not cryptographic, only a cache key.
        let hash = APP_JS.bytes().chain(APP_CSS.bytes()).fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    })
}

/// `GET /web/assets/{file}`.
pub(super) async fn serve(file: web::Path<String>) -> HttpResponse {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("Not Found"),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(body)
}
