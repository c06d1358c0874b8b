//! Which OS an installer ISO holds, the way libosinfo decides it: the ISO 9660 primary volume
//! descriptor's volume, system, publisher and application IDs (and volume size) are matched
//! against each medium osinfo-db describes (the Debian package `osinfo-db`, XML under
//! /usr/share/osinfo). osinfo's patterns are regular expressions searched anywhere in the field
//! (`g_regex_match_simple` with no flags: unanchored and case-sensitive); a medium matches when
//! every pattern it gives matches. When several OSes match (Windows 10 and 11 share their
//! patterns), the most recently released one wins, then the first in file order.
//!
//! The database is read once per process, on first use, and indexed; nothing is read again
//! while the app draws.

use regex::Regex;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where osinfo-db installs its OS descriptions.
pub const OSINFO_DIR: &str = "/usr/share/osinfo/os";

/// What was recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectedOs {
    /// osinfo's short ID, e.g. "debian11", "win11".
    pub short_id: String,
    pub name: String,
    /// Recommended resources, when osinfo says.
    pub memory_mib: Option<u64>,
    pub cpus: Option<u8>,
    pub disk_gib: Option<u64>,
}

/// The identifying fields of an ISO 9660 image, trailing spaces removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IsoIds {
    pub volume: String,
    pub system: String,
    pub publisher: String,
    pub application: String,
    pub volume_size: u64,
}

/// Reads the primary volume descriptor (sector 16) of the ISO at `path`.
pub fn read_iso(path: &Path) -> std::io::Result<IsoIds> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(16 * 2048))?;
    let mut pvd = [0u8; 2048];
    file.read_exact(&mut pvd)?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an ISO 9660 image",
        ));
    }
    let text = |range: std::ops::Range<usize>| {
        String::from_utf8_lossy(&pvd[range])
            .trim_end_matches([' ', '\0'])
            .to_string()
    };
    let blocks = u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]);
    let block_size = u16::from_le_bytes([pvd[128], pvd[129]]);
    Ok(IsoIds {
        system: text(8..40),
        volume: text(40..72),
        publisher: text(318..446),
        application: text(574..702),
        volume_size: u64::from(blocks) * u64::from(block_size),
    })
}

/// One medium's patterns.
struct Medium {
    volume: Option<Regex>,
    system: Option<Regex>,
    publisher: Option<Regex>,
    application: Option<Regex>,
    volume_size: Option<u64>,
}

impl Medium {
    fn matches(&self, ids: &IsoIds) -> bool {
        let field = |pattern: &Option<Regex>, value: &str| match pattern {
            None => true,
            Some(re) => !value.is_empty() && re.is_match(value),
        };
        field(&self.volume, &ids.volume)
            && field(&self.system, &ids.system)
            && field(&self.publisher, &ids.publisher)
            && field(&self.application, &ids.application)
            && self.volume_size.is_none_or(|s| s == ids.volume_size)
    }
}

struct OsRecord {
    os: DetectedOs,
    release_date: String,
    media: Vec<Medium>,
}

/// osinfo-db, indexed.
pub struct OsDb {
    records: Vec<OsRecord>,
}

impl OsDb {
    /// The database under `dir` (missing or unreadable files are skipped with a log line).
    pub fn load(dir: &Path) -> Self {
        let mut files = Vec::new();
        collect_xml(dir, &mut files, 0);
        files.sort();
        let records = files.iter().filter_map(|f| parse_file(f)).collect();
        Self { records }
    }

    /// The system's osinfo-db, read on first use.
    pub fn system() -> &'static OsDb {
        static DB: OnceLock<OsDb> = OnceLock::new();
        DB.get_or_init(|| OsDb::load(Path::new(OSINFO_DIR)))
    }

    /// How many OSes it knows.
    #[cfg(test)]
    pub fn os_count(&self) -> usize {
        self.records.len()
    }

    /// The OS whose media match `ids`.
    pub fn identify(&self, ids: &IsoIds) -> Option<DetectedOs> {
        let mut best: Option<&OsRecord> = None;
        for record in &self.records {
            if record.media.iter().any(|m| m.matches(ids))
                && best.is_none_or(|b| record.release_date > b.release_date)
            {
                best = Some(record);
            }
        }
        best.map(|r| r.os.clone())
    }
}

/// The OS on the ISO at `path`, from the system's osinfo-db.
pub fn detect_iso(path: &Path) -> Option<DetectedOs> {
    read_iso(path)
        .ok()
        .and_then(|ids| OsDb::system().identify(&ids))
}

fn collect_xml(dir: &Path, out: &mut Vec<PathBuf>, depth: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth < 4 {
            collect_xml(&path, out, depth + 1);
        } else if path.extension().is_some_and(|e| e == "xml") {
            out.push(path);
        }
    }
}

fn parse_file(path: &Path) -> Option<OsRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc = match roxmltree::Document::parse(&text) {
        Ok(doc) => doc,
        Err(e) => {
            log::warn!("osinfo: {}: {e}", path.display());
            return None;
        }
    };
    let os = doc.descendants().find(|n| n.has_tag_name("os"))?;
    let child_text = |node: roxmltree::Node, tag: &str| {
        node.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .map(|t| t.trim().to_string())
    };
    let compile = |node: roxmltree::Node, tag: &str| {
        let pattern = child_text(node, tag)?;
        match Regex::new(&pattern) {
            Ok(re) => Some(re),
            Err(e) => {
                log::debug!("osinfo: {}: pattern {pattern:?}: {e}", path.display());
                None
            }
        }
    };
    let media = os
        .children()
        .filter(|n| n.has_tag_name("media"))
        .filter_map(|m| m.children().find(|c| c.has_tag_name("iso")))
        .map(|iso| Medium {
            volume: compile(iso, "volume-id"),
            system: compile(iso, "system-id"),
            publisher: compile(iso, "publisher-id"),
            application: compile(iso, "application-id"),
            volume_size: child_text(iso, "volume-size").and_then(|s| s.parse().ok()),
        })
        .filter(|m| {
            m.volume.is_some()
                || m.system.is_some()
                || m.publisher.is_some()
                || m.application.is_some()
        })
        .collect::<Vec<_>>();
    let recommended = os
        .children()
        .filter(|n| n.has_tag_name("resources"))
        .find(|r| matches!(r.attribute("arch"), Some("all") | Some("x86_64")))
        .and_then(|r| r.children().find(|c| c.has_tag_name("recommended")));
    let number = |tag: &str| {
        recommended
            .and_then(|r| child_text(r, tag))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(OsRecord {
        os: DetectedOs {
            short_id: child_text(os, "short-id")?,
            name: child_text(os, "name")?,
            memory_mib: number("ram").map(|b| b >> 20),
            cpus: number("n-cpus").map(|n| n.clamp(1, 255) as u8),
            disk_gib: number("storage").map(|b| b >> 30),
        },
        release_date: child_text(os, "release-date").unwrap_or_default(),
        media,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso_with(dir: &Path, volume: &str) -> PathBuf {
        let iso = dir.join("test.iso");
        let mut image = vec![0u8; 17 * 2048];
        let pvd = &mut image[16 * 2048..];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[8..40].fill(b' ');
        pvd[40..72].fill(b' ');
        pvd[40..40 + volume.len()].copy_from_slice(volume.as_bytes());
        std::fs::write(&iso, &image).unwrap();
        iso
    }

    #[test]
    fn detects_with_groups_alternation_and_classes() {
        let tmp = crate::test_support::TempDir::new("osinfo");
        let dir = &tmp.0;
        std::fs::create_dir_all(dir.join("os/microsoft.com")).unwrap();
        for (file, id, date) in [
            ("win-10", "win10", "2015-07-29"),
            ("win-11", "win11", "2021-10-04"),
        ] {
            std::fs::write(
                dir.join(format!("os/microsoft.com/{file}.xml")),
                format!(
                    r#"<libosinfo><os id="x/{id}"><short-id>{id}</short-id><name>Windows {id}</name>
                    <release-date>{date}</release-date>
                    <media arch="x86_64"><iso><volume-id>^(J_)?(CCSN?A|C?CCOMA)_X64FREE?_</volume-id></iso></media>
                    <media arch="x86_64"><iso><volume-id>Debian 1\d\.\d+</volume-id><system-id>LINUX</system-id></iso></media>
                    <resources arch="all"><recommended><n-cpus>2</n-cpus><ram>4294967296</ram><storage>68719476736</storage></recommended></resources>
                    </os></libosinfo>"#
                ),
            )
            .unwrap();
        }
        let db = OsDb::load(&dir.join("os"));
        assert_eq!(db.os_count(), 2);
        let iso = iso_with(dir, "CCCOMA_X64FRE_EN-US_DV9");
        let found = db.identify(&read_iso(&iso).unwrap()).unwrap();
        assert_eq!(found.short_id, "win11", "the newest of equal matches");
        assert_eq!(
            (found.cpus, found.memory_mib, found.disk_gib),
            (Some(2), Some(4096), Some(64))
        );
        // A system-id pattern must match too: this ISO has none.
        let iso = iso_with(dir, "Debian 12.1");
        assert!(db.identify(&read_iso(&iso).unwrap()).is_none());
        std::fs::write(&iso, vec![0u8; 40 * 1024]).unwrap();
        assert!(read_iso(&iso).is_err(), "not ISO 9660");
    }
}
