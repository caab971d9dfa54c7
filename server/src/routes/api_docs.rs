//! Interactive API documentation: Swagger UI at `/docs` and ReDoc at
//! `/redoc`, both reading this server's `/openapi.json`. Their scripts and
//! styles are the npm packages' built files, vendored by
//! `scripts/vendor-api-docs` into `server/ui/vendor/` (versions and digests
//! in its `MANIFEST`) and compiled into the binary: nothing is fetched at
//! build or run time. `ui.api_docs = false` turns both off.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::ApiPath;
use super::ui::{Asset, Assets};
use crate::error::{ApiError, ErrorBody};

/// Swagger UI's policy: its own scripts only (no inline or evaluated
/// code), requests to this server only (so the key typed in "Authorize"
/// cannot go elsewhere). React sets `style` attributes and the stylesheet
/// draws its icons from `data:` URLs: those two are allowed.
pub const SWAGGER_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// ReDoc's policy: as Swagger UI's, and its search index runs in a worker
/// started from a `blob:` URL.
pub const REDOC_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGES: &[Asset] = &[
    Asset {
        name: "swagger.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/docs/swagger.html"),
        gzip: false,
    },
    Asset {
        name: "redoc.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/docs/redoc.html"),
        gzip: false,
    },
];

const ASSETS: &[Asset] = &[
    Asset {
        name: "swagger-ui-bundle.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/vendor/swagger-ui-bundle.js.gz"),
        gzip: true,
    },
    Asset {
        name: "swagger-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/vendor/swagger-ui.css.gz"),
        gzip: true,
    },
    Asset {
        name: "swagger-init.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/docs/swagger-init.js"),
        gzip: false,
    },
    Asset {
        name: "redoc.standalone.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/vendor/redoc.standalone.js.gz"),
        gzip: true,
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/icon.svg"),
        gzip: false,
    },
];

static PAGE: Assets = Assets::new(PAGES);
static ASSET: Assets = Assets::new(ASSETS);

/// The names `/docs/assets/{asset}` serves.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

/// The paths these pages add to the API, for the OpenAPI document.
pub const PATHS: [&str; 3] = ["/docs", "/redoc", "/docs/assets/{asset}"];

/// Interactive API documentation (Swagger UI): every operation, with "Try
/// it out" against this server.
#[utoipa::path(get, path = "/docs", tag = "ui",
    responses((status = 200, description = "Swagger UI", content_type = "text/html", body = String),
        (status = 304, description = "not modified (`If-None-Match`)")))]
pub async fn swagger(headers: HeaderMap) -> Response {
    PAGE.serve(0, &headers, SWAGGER_CSP)
}

/// The API reference (ReDoc).
#[utoipa::path(get, path = "/redoc", tag = "ui",
    responses((status = 200, description = "ReDoc", content_type = "text/html", body = String),
        (status = 304, description = "not modified (`If-None-Match`)")))]
pub async fn redoc(headers: HeaderMap) -> Response {
    PAGE.serve(1, &headers, REDOC_CSP)
}

/// A script, stylesheet or icon of `/docs` and `/redoc` (gzip-compressed
/// when the client accepts it).
#[utoipa::path(get, path = "/docs/assets/{asset}", tag = "ui",
    params(("asset" = String, Path, description = "a file of Swagger UI or ReDoc")),
    responses((status = 200, description = "the asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 304, description = "not modified (`If-None-Match`)"),
        (status = 404, body = ErrorBody)))]
pub async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Response {
    match ASSET.position(&name) {
        // Each asset under its page's policy (a script's policy does not
        // matter to the page that loads it, but a file opened on its own
        // gets the stricter one).
        Some(i) => ASSET.serve(i, &headers, SWAGGER_CSP),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Read;

    use sha2::{Digest, Sha256};

    use super::*;

    const MANIFEST: &str = include_str!("../../ui/vendor/MANIFEST");

    fn manifest() -> (
        HashMap<&'static str, &'static str>,
        Vec<(&'static str, &'static str)>,
    ) {
        let mut files = HashMap::new();
        let mut packages = Vec::new();
        for line in MANIFEST.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split(' ').collect();
            match f[..] {
                ["file", name, sha] => {
                    files.insert(name, sha);
                }
                ["package", name, version, _integrity] => packages.push((name, version)),
                ["patch", ..] => {}
                _ => panic!("unexpected MANIFEST line {line:?}"),
            }
        }
        (files, packages)
    }

    #[test]
    fn the_vendored_files_are_the_ones_the_manifest_pins() {
        let (files, _) = manifest();
        let vendored: Vec<&Asset> = ASSETS.iter().filter(|a| a.gzip).collect();
        assert_eq!(vendored.len(), files.len(), "every vendored file is served");
        for a in vendored {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(a.body)
                .read_to_end(&mut plain)
                .unwrap();
            let want = files
                .get(a.name)
                .unwrap_or_else(|| panic!("{} pinned", a.name));
            assert_eq!(
                &hex::encode(Sha256::digest(&plain)),
                want,
                "{}: not the file of the pinned package (run scripts/vendor-api-docs)",
                a.name
            );
            // The plain bytes served to a client without gzip are the same.
            let i = ASSET.position(a.name).unwrap();
            assert_eq!(ASSET.plain(i).as_ref(), plain.as_slice());
            assert_eq!(ASSET.get(i).name, a.name);
        }
    }

    #[test]
    fn the_readme_names_the_embedded_versions() {
        let readme = include_str!("../../README.md");
        let (_, packages) = manifest();
        assert_eq!(packages.len(), 2);
        for (name, version) in packages {
            assert!(
                readme.contains(&format!("`{name}` {version}")),
                "server/README.md does not say `{name}` {version} is embedded"
            );
        }
    }

    #[test]
    fn the_pages_load_only_what_is_served_here() {
        for page in PAGES {
            let html = std::str::from_utf8(page.body).unwrap();
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{}: nothing from elsewhere",
                page.name
            );
            assert!(
                !html.contains("<script>") && !html.contains("style="),
                "{}: no inline code",
                page.name
            );
            for src in html.split("docs/assets/").skip(1) {
                let name = src.split('"').next().unwrap();
                assert!(ASSET.position(name).is_some(), "{}: {name}", page.name);
            }
        }
    }
}
