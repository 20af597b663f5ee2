//! Loading a folder of YAML templates (SPEC §4.1): every `*.yaml` / `*.yml` file directly in
//! it, one template version per file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use status_check_engine::{Limits, Template, TemplateError};

/// The templates of a folder that are valid, and a problem for each that is not.
#[derive(Debug, Default)]
pub struct LoadedTemplates {
    pub templates: Vec<(PathBuf, Template)>,
    pub errors: Vec<TemplateError>,
}

/// Loads every template file in `dir`, sorted by file name. Two files with the same name and
/// version are an error.
pub fn load_dir(dir: &Path, limits: &Limits) -> std::io::Result<LoadedTemplates> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && is_template_file(path))
        .collect();
    files.sort();
    let mut loaded = LoadedTemplates::default();
    let mut seen: BTreeMap<(String, u32), PathBuf> = BTreeMap::new();
    for path in files {
        match load_file(&path, limits) {
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
    Ok(loaded)
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
