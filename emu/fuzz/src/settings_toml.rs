//! Target `settings_toml`: the app's `settings.toml` parser, [`Settings::parse`] (the function
//! `cove` calls when it loads its settings), on arbitrary file contents. Checked besides "no
//! panic": settings that parse write back to text that parses to the same settings.
//!
//! The app is a binary crate, so no crate can depend on it, and its settings module needs the
//! `display` crate (wgpu, egui) for the scale mode it maps to. The format itself is
//! `app/src/settings/format.rs`, which needs only serde and toml; this module compiles that very
//! file, included by path.

#[path = "../../../app/src/settings/format.rs"]
mod format;

pub use format::Settings;

/// Runs one input: the settings it parses to, if any. Never panics on any input; a panic is a
/// bug in the app's settings format.
pub fn run(data: &[u8]) -> Option<Settings> {
    let text = std::str::from_utf8(data).ok()?;
    let settings = Settings::parse(text).ok()?;
    let written = settings.to_toml().expect("parsed settings serialize");
    let again = Settings::parse(&written).expect("written settings parse");
    assert_eq!(again, settings, "round trip changed the settings");
    Some(settings)
}

/// Inputs for the seed corpus (`seeds/settings_toml/`): files the app writes, hand-edited
/// ones, and broken ones.
pub mod seeds {
    /// One seed input and the `scale` it parses to (None: it does not parse).
    pub struct Seed {
        /// File name under `seeds/settings_toml/`.
        pub name: &'static str,
        /// The file's text.
        pub text: &'static str,
        /// The parsed `scale`.
        pub scale: Option<&'static str>,
    }

    /// All seeds.
    pub fn all() -> Vec<Seed> {
        let seed = |name, text, scale| Seed { name, text, scale };
        vec![
            seed("empty", "", Some("fit")),
            seed("fill", "scale = \"fill\"\n", Some("fill")),
            seed("one_to_one", "scale = 'one-to-one'\n", Some("one-to-one")),
            seed(
                "unknown_scale",
                "scale = \"sideways \\u00e9\\t\"\n",
                Some("sideways \u{e9}\t"),
            ),
            seed(
                "extra_keys",
                "# Cove settings\nscale = \"fit\"\n\n[window]\nwidth = 800\nsize = [1, 2.5]\n",
                Some("fit"),
            ),
            seed("wrong_type", "scale = 3\n", None),
            seed("duplicate_key", "scale = \"fit\"\nscale = \"fill\"\n", None),
            seed("unterminated", "scale = [", None),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_expected() {
        for seed in seeds::all() {
            let parsed = run(seed.text.as_bytes());
            assert_eq!(
                parsed.as_ref().map(|s| s.scale.as_str()),
                seed.scale,
                "{}",
                seed.name
            );
        }
    }

    /// `COVE_UPDATE_SEEDS=1 cargo test` rewrites the seed files.
    #[test]
    fn seed_files_are_current() {
        let seeds = seeds::all();
        crate::check_seed_files(
            "settings_toml",
            seeds.iter().map(|seed| (seed.name, seed.text.as_bytes())),
        );
    }

    #[test]
    fn hostile_inputs_end_cleanly() {
        assert!(run(&[0xff, 0xfe]).is_none(), "not UTF-8");
        run(b"scale = \"\\u0000\"");
        run("[[a]]\n[[a]]\nscale=\"\u{10ffff}\"".as_bytes());
    }
}
