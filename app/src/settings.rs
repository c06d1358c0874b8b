//! App settings, kept in the user's config directory (`settings.toml`): what the app remembers
//! between runs. A missing or unreadable file means defaults; it is never an error.

use display::ScaleMode;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How VM displays are scaled: "fit", "one-to-one" or "fill".
    pub scale: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scale: "fit".into(),
        }
    }
}

impl Settings {
    /// Where settings live: `<config dir>/settings.toml`, or beside the library with
    /// `--data-dir` (so tests and portable installs keep everything in one place).
    pub fn path(data_dir: Option<&Path>) -> Option<PathBuf> {
        match data_dir {
            Some(dir) => Some(dir.join("settings.toml")),
            None => directories::ProjectDirs::from("org", "Cove", "cove")
                .map(|d| d.config_dir().join("settings.toml")),
        }
    }

    pub fn load(path: Option<&Path>) -> Self {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| match toml::from_str(&text) {
                Ok(settings) => Some(settings),
                Err(e) => {
                    log::warn!("ignoring unreadable settings: {e}");
                    None
                }
            })
            .unwrap_or_default()
    }

    pub fn save(&self, path: Option<&Path>) {
        let Some(path) = path else { return };
        let written = toml::to_string(self)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                std::fs::write(path, text).map_err(|e| e.to_string())
            });
        if let Err(e) = written {
            log::warn!("cannot save settings to {}: {e}", path.display());
        }
    }

    pub fn scale_mode(&self) -> ScaleMode {
        match self.scale.as_str() {
            "one-to-one" => ScaleMode::OneToOne,
            "fill" => ScaleMode::Fill,
            _ => ScaleMode::Fit,
        }
    }

    pub fn set_scale_mode(&mut self, mode: ScaleMode) {
        self.scale = match mode {
            ScaleMode::Fit => "fit",
            ScaleMode::OneToOne => "one-to-one",
            ScaleMode::Fill => "fill",
        }
        .into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files() {
        let dir = std::env::temp_dir().join(format!("cove-settings-{}", std::process::id()));
        let path = Settings::path(Some(&dir)).unwrap();
        assert_eq!(Settings::load(Some(&path)), Settings::default());
        let mut settings = Settings::default();
        settings.set_scale_mode(ScaleMode::Fill);
        settings.save(Some(&path));
        assert_eq!(Settings::load(Some(&path)).scale_mode(), ScaleMode::Fill);
        std::fs::write(&path, "scale = [").unwrap();
        assert_eq!(Settings::load(Some(&path)), Settings::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
