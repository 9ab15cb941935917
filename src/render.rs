//! Handlebars templates: the defaults are embedded from `templates/`, and a deployment
//! repository may override any of them with a file of the same name in its own `templates/`
//! folder, on the branch the change lands on.

use handlebars::Handlebars;
use serde::Serialize;

/// An embedded template: its file name under `templates/` and its text.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub file: &'static str,
    pub text: &'static str,
    /// What `{{value}}` does to a value: nothing (commit messages, titles), or escape the
    /// characters that make HTML (a body rendered as Markdown, where a commit subject holding
    /// `<!--` would otherwise hide what follows from its reviewers). `{{{value}}}` is raw.
    pub escape: fn(&str) -> String,
}

/// The message of a `ferry bump` commit (its trailers are added by ferry).
pub const BUMP: Template = Template {
    file: "bump.hbs",
    text: include_str!("../templates/bump.hbs"),
    escape: handlebars::no_escape,
};

/// The title of a promotion request.
pub const PROMOTION_TITLE: Template = Template {
    file: "promotion-title.hbs",
    text: include_str!("../templates/promotion-title.hbs"),
    escape: handlebars::no_escape,
};

/// The body of a promotion request.
pub const PROMOTION_BODY: Template = Template {
    file: "promotion-body.hbs",
    text: include_str!("../templates/promotion-body.hbs"),
    escape: markdown_escape,
};

/// `&`, `<` and `>` as entities: Markdown (GitHub's, ferry's `requests`) shows them as
/// written, and no value can open an HTML comment or a tag.
pub fn markdown_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("template `{file}`: {message}")]
pub struct RenderError {
    pub file: String,
    pub message: String,
}

/// Renders `template` (or `override_text`, the repository's own version, shown as `origin`)
/// with `data`. Strict: a name the data lacks is an error, not an empty string.
pub fn render(
    template: Template,
    override_text: Option<(&str, &str)>,
    data: &impl Serialize,
) -> Result<String, RenderError> {
    compile(template, override_text)?.render(data)
}

/// A template parsed once, to render several times (a request body cut to size).
pub struct Compiled {
    registry: Handlebars<'static>,
    file: String,
}

/// Parses `template` (or `override_text`, shown as `origin`); see [`render`].
pub fn compile(
    template: Template,
    override_text: Option<(&str, &str)>,
) -> Result<Compiled, RenderError> {
    let (text, file) = match override_text {
        Some((text, origin)) => (text, origin.to_owned()),
        None => (template.text, format!("templates/{}", template.file)),
    };
    let mut registry = Handlebars::new();
    registry.set_strict_mode(true);
    registry.register_escape_fn(template.escape);
    registry.register_helper("short", Box::new(short));
    registry
        .register_template_string(template.file, text)
        .map_err(|e| RenderError {
            file: file.clone(),
            message: e.to_string(),
        })?;
    Ok(Compiled { registry, file })
}

impl Compiled {
    pub fn render(&self, data: &impl Serialize) -> Result<String, RenderError> {
        let name = self
            .registry
            .get_templates()
            .keys()
            .next()
            .expect("one template");
        self.registry
            .render(name, data)
            .map(|s| s.trim_end().to_owned())
            .map_err(|e| RenderError {
                file: self.file.clone(),
                message: e.to_string(),
            })
    }
}

/// `{{short sha}}`: the first 7 characters of a commit id or digest.
fn short(
    h: &handlebars::Helper<'_>,
    _: &Handlebars<'_>,
    _: &handlebars::Context,
    _: &mut handlebars::RenderContext<'_, '_>,
    out: &mut dyn handlebars::Output,
) -> handlebars::HelperResult {
    let value = h
        .param(0)
        .and_then(|p| p.value().as_str())
        .unwrap_or_default();
    out.write(&value.chars().take(7).collect::<String>())?;
    Ok(())
}
