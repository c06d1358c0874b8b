//! The `settings.toml` format: what the app remembers between runs ([`Settings`]), its
//! defaults, and the text it is read from and written as. Pure (no files, no GUI types), so
//! the fuzz target `settings_toml` (emu/fuzz) compiles this very file.

use serde::{Deserialize, Serialize};

/// What the app remembers between runs. Keys the file leaves out take their defaults; keys it
/// does not know are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// How VM displays are scaled: "fit", "one-to-one" or "fill" (anything else means "fit").
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
    /// Parses the text of a `settings.toml`: a TOML table whose known keys have the right
    /// types. Fails, saying where, on anything else.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The text of a `settings.toml` holding these settings ([`Settings::parse`] reads it
    /// back to the same settings).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}
