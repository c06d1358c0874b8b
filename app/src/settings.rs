//! App settings, kept in the user's config directory (`settings.toml`): where the file lives,
//! loading and saving it, and the display scale it names. The format itself (text to
//! [`Settings`] and back) is [`format`]. A missing or unreadable file means defaults; it is
//! never an error.

mod format;

pub use format::Settings;

use display::ScaleMode;
use std::path::{Path, PathBuf};

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

    /// The settings in the file at `path` ([`Settings::parse`]), or the defaults when there is
    /// no path, no file, or a file that does not parse (logged).
    pub fn load(path: Option<&Path>) -> Self {
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| match Self::parse(&text) {
                Ok(settings) => Some(settings),
                Err(e) => {
                    log::warn!("ignoring unreadable settings: {e}");
                    None
                }
            })
            .unwrap_or_default()
    }

    /// Writes the settings to `path` (creating its directory); a failure is logged.
    pub fn save(&self, path: Option<&Path>) {
        let Some(path) = path else { return };
        let written = self.to_toml().map_err(|e| e.to_string()).and_then(|text| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::fs::write(path, text).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            log::warn!("cannot save settings to {}: {e}", path.display());
        }
    }

    /// The display scale the settings name (unknown names mean [`ScaleMode::Fit`]).
    pub fn scale_mode(&self) -> ScaleMode {
        match self.scale.as_str() {
            "one-to-one" => ScaleMode::OneToOne,
            "fill" => ScaleMode::Fill,
            _ => ScaleMode::Fit,
        }
    }

    /// Remembers `mode` as the display scale.
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

    #[test]
    fn parse_takes_defaults_ignores_unknown_keys_and_refuses_wrong_types() {
        assert_eq!(Settings::parse("").unwrap(), Settings::default());
        let parsed = Settings::parse("scale = \"fill\"\n[window]\nwidth = 3\n").unwrap();
        assert_eq!(parsed.scale_mode(), ScaleMode::Fill);
        assert_eq!(
            Settings::parse("scale = \"sideways\"")
                .unwrap()
                .scale_mode(),
            ScaleMode::Fit
        );
        assert!(Settings::parse("scale = 3").is_err());
        let text = parsed.to_toml().unwrap();
        assert_eq!(Settings::parse(&text).unwrap(), parsed);
    }
}
