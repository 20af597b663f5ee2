//! Loading a folder of YAML templates (SPEC §4.1): every `*.yaml` / `*.yml` file directly in
//! it, one template version per file — or the same from the templates built into the binary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use status_check_engine::{Limits, Template, TemplateError};

/// The templates of a folder that are valid, and a problem for each that is not.
#[derive(Debug, Default)]
pub struct LoadedTemplates {
    pub templates: Vec<(PathBuf, Template)>,
    pub errors: Vec<TemplateError>,
}

/// The repository's `templates/*.yaml` when the binary was built (see build.rs): file name and
/// text.
const BUILT_IN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/built_in_templates.rs"));

/// Where the shipped templates come from: `TEMPLATES_DIR` when set, else the binary itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Dir(PathBuf),
    BuiltIn,
}

impl TemplateSource {
    /// Loads every template of the source (see [`load_dir`]).
    pub fn load(&self, limits: &Limits) -> std::io::Result<LoadedTemplates> {
        match self {
            TemplateSource::Dir(dir) => load_dir(dir, limits),
            TemplateSource::BuiltIn => Ok(load_built_in(limits)),
        }
    }
}

impl fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateSource::Dir(dir) => write!(f, "{}", dir.display()),
            TemplateSource::BuiltIn => f.write_str("the templates built into the binary"),
        }
    }
}

/// Loads every template file in `dir`, sorted by file name. Two files with the same name and
/// version are an error.
pub fn load_dir(dir: &Path, limits: &Limits) -> std::io::Result<LoadedTemplates> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && is_template_file(path))
        .collect();
    files.sort();
    Ok(load_each(files.into_iter().map(|path| {
        let template = load_file(&path, limits);
        (path, template)
    })))
}

/// The templates built into the binary, named `built-in/FILE`.
pub fn load_built_in(limits: &Limits) -> LoadedTemplates {
    load_each(BUILT_IN.iter().map(|(name, text)| {
        let path = Path::new("built-in").join(name);
        let template = Template::from_yaml(text, &path.display().to_string(), limits);
        (path, template)
    }))
}

/// Collects loaded files, refusing a second file with a name and version already seen.
fn load_each(
    files: impl Iterator<Item = (PathBuf, Result<Template, Vec<TemplateError>>)>,
) -> LoadedTemplates {
    let mut loaded = LoadedTemplates::default();
    let mut seen: BTreeMap<(String, u32), PathBuf> = BTreeMap::new();
    for (path, template) in files {
        match template {
            Ok(template) => {
                let key = (template.name.to_string(), template.version);
                if let Some(first) = seen.get(&key) {
                    loaded.errors.push(TemplateError {
                        source: Some(path.display().to_string()),
                        field: "version".into(),
                        line: None,
                        message: format!(
                            "{} version {} is already defined in {}",
                            key.0,
                            key.1,
                            first.display()
                        ),
                    });
                    continue;
                }
                seen.insert(key, path.clone());
                loaded.templates.push((path, template));
            }
            Err(errors) => loaded.errors.extend(errors),
        }
    }
    loaded
}

/// Loads one template file.
pub fn load_file(path: &Path, limits: &Limits) -> Result<Template, Vec<TemplateError>> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![TemplateError {
            source: Some(source.clone()),
            field: String::new(),
            line: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    Template::from_yaml(&text, &source, limits)
}

fn is_template_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the binary carries is what `templates/` held when it was built, file for file.
    #[test]
    fn the_built_in_templates_are_the_repository_templates() {
        let limits = Limits::default();
        let built_in = TemplateSource::BuiltIn.load(&limits).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        let on_disk = TemplateSource::Dir(dir).load(&limits).unwrap();
        assert!(built_in.errors.is_empty(), "{:?}", built_in.errors);
        assert!(!built_in.templates.is_empty());
        let files = |loaded: &LoadedTemplates| -> Vec<_> {
            loaded
                .templates
                .iter()
                .map(|(path, template)| {
                    (
                        path.file_name().map(ToOwned::to_owned),
                        template.definition().clone(),
                    )
                })
                .collect()
        };
        assert_eq!(files(&built_in), files(&on_disk));
        let (path, _) = &built_in.templates[0];
        assert!(path.starts_with("built-in"), "{}", path.display());
    }
}
