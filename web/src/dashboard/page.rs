//! Filling the one HTML template: the page's title and the arguments its script starts from.

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use cascade_tracker::{StageId, StoreConfig};
use serde::Serialize;

use super::assets;

/// The template every page is made from.
const TEMPLATE: &str = include_str!("assets/page.html");

/// Which page to show.
#[derive(Debug)]
pub(super) enum PageKind {
    /// The dashboard.
    Overview,
    /// One worker.
    Worker {
        /// Its stage.
        stage: StageId,
        /// Its display name.
        name: String,
    },
    /// One job, by number.
    Job(i64),
    /// Nothing to show, and why.
    Missing(String),
}

/// A stage as the script needs it to name stages and build worker links.
#[derive(Debug, Serialize)]
struct StageName {
    letter: StageId,
    name: String,
}

/// What the script reads from the page (`data-args` on `<body>`).
#[derive(Debug, Serialize)]
struct Args<'a> {
    page: &'static str,
    project: &'a str,
    stages: Vec<StageName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<StageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

/// One page, ready to render.
#[derive(Debug)]
pub(super) struct Page<'a> {
    config: &'a StoreConfig,
    kind: PageKind,
}

impl<'a> Page<'a> {
    /// A page of `kind` for the project `config` describes.
    pub(super) fn new(config: &'a StoreConfig, kind: PageKind) -> Self {
        Self { config, kind }
    }

    /// The HTML response with `status`.
    pub(super) fn render(&self, status: StatusCode) -> HttpResponse {
        let project = self.config.project.as_str();
        let mut args = Args {
            page: "overview",
            project,
            stages: self
                .config
                .enabled_stages()
                .map(|letter| StageName { letter, name: self.config.stage_name(letter).unwrap_or_default().to_owned() })
                .collect(),
            stage: None,
            name: None,
            job: None,
            message: None,
        };
        let title = match &self.kind {
            PageKind::Overview => format!("{project} - Dashboard"),
            PageKind::Worker { stage, name } => {
                (args.page, args.stage, args.name) = ("worker", Some(*stage), Some(name.as_str()));
                format!("{name} - {project}")
            }
            PageKind::Job(number) => {
                (args.page, args.job) = ("job", Some(*number));
                format!("Job #{number} - {project}")
            }
            PageKind::Missing(message) => {
                (args.page, args.message) = ("missing", Some(message.as_str()));
                format!("{message} - {project}")
            }
        };
        // unwrap: serialising strings and numbers cannot fail.
        let args = serde_json::to_string(&args).unwrap();
        let html = TEMPLATE
            .replace("{{title}}", &escape_html(&title))
            .replace("{{project}}", &escape_html(project))
            .replace("{{version}}", assets::version())
            .replace("{{args}}", &escape_html(&args));
        HttpResponse::build(status)
            .content_type(ContentType::html())
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .body(html)
    }
}

/// `text` safe inside HTML text and double- or single-quoted attributes.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape_html(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[actix_web::test]
    async fn project_names_cannot_inject_markup() {
        let config = StoreConfig { project: "<script>alert(1)</script>".to_owned(), ..StoreConfig::default() };
        let response = Page::new(&config, PageKind::Job(7)).render(StatusCode::OK);
        assert_eq!(response.status(), StatusCode::OK);
        let body = actix_web::body::to_bytes(response.into_body()).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(!body.contains("<script>alert"), "{body}");
        assert!(body.contains("Job #7 - &lt;script&gt;"), "{body}");
    }
}
