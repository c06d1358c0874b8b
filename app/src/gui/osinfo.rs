//! Which OS an installer ISO holds: its ISO 9660 volume ID, matched against osinfo-db's media
//! descriptions (the Debian package `osinfo-db`, XML under /usr/share/osinfo) when installed.
//! Parsed by hand: only the volume-ID patterns and a few names are needed, and osinfo-db's XML
//! is regular enough that a full XML parser would add a dependency for nothing.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Where osinfo-db installs its OS descriptions.
pub const OSINFO_DIR: &str = "/usr/share/osinfo/os";

/// What was recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectedOs {
    pub name: String,
    /// Recommended resources, when osinfo says.
    pub memory_mib: Option<u64>,
    pub cpus: Option<u8>,
    pub disk_gib: Option<u64>,
}

/// The volume ID of an ISO 9660 image (primary volume descriptor at sector 16).
pub fn volume_id(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(16 * 2048))?;
    let mut descriptor = [0u8; 2048];
    file.read_exact(&mut descriptor)?;
    if descriptor[0] != 1 || &descriptor[1..6] != b"CD001" {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not an ISO 9660 image",
        ));
    }
    Ok(String::from_utf8_lossy(&descriptor[40..72])
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string())
}

/// Looks `volume_id` up in osinfo-db under `dir`. None when nothing matches or osinfo-db is
/// not installed.
pub fn detect(volume_id: &str, dir: &Path) -> Option<DetectedOs> {
    let mut files = Vec::new();
    collect_xml(dir, &mut files, 0);
    for file in files {
        let Ok(xml) = std::fs::read_to_string(&file) else {
            continue;
        };
        let matches = tags(&xml, "volume-id")
            .iter()
            .any(|pattern| glob_regex_match(pattern, volume_id));
        if matches {
            let name = tags(&xml, "name").into_iter().next()?;
            let recommended = section(&xml, "recommended");
            let number = |tag: &str| {
                recommended
                    .and_then(|r| tags(r, tag).into_iter().next())
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            return Some(DetectedOs {
                name,
                memory_mib: number("ram").map(|b| b >> 20),
                cpus: number("n-cpus").map(|n| n.clamp(1, 255) as u8),
                disk_gib: number("storage").map(|b| b >> 30),
            });
        }
    }
    None
}

fn collect_xml(dir: &Path, out: &mut Vec<std::path::PathBuf>, depth: u32) {
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

/// The text of every `<tag ...>text</tag>`.
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(gt) = after.find('>') else { break };
        if !matches!(after.as_bytes().first(), Some(b'>') | Some(b' ')) {
            rest = &after[gt..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        found.push(unescape(&body[..end]));
        rest = &body[end..];
    }
    found
}

fn section<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))?;
    let end = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + end])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// osinfo's volume-id values are regular expressions; the ones in the database use only
/// literals, `.`, `[...]`, `\`, the quantifiers `*`, `+` and `?`, `^` and `$`, which this matcher handles (anchored at
/// the start, like osinfo's `g_regex_match`).
fn glob_regex_match(pattern: &str, text: &str) -> bool {
    let pattern = pattern.trim().trim_start_matches('^');
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    matches_at(&p, 0, &t, 0)
}

fn matches_at(p: &[char], pi: usize, t: &[char], ti: usize) -> bool {
    if pi >= p.len() {
        return true;
    }
    if p[pi] == '$' && pi + 1 == p.len() {
        return ti == t.len();
    }
    let (atom_len, matches_char): (usize, Box<dyn Fn(char) -> bool>) = match p[pi] {
        '.' => (1, Box::new(|_| true)),
        '\\' if pi + 1 < p.len() => {
            let c = p[pi + 1];
            (2, Box::new(move |x| x == c))
        }
        '[' => match p[pi..].iter().position(|&c| c == ']') {
            Some(end) => {
                let set: Vec<char> = p[pi + 1..pi + end].to_vec();
                (end + 1, Box::new(move |x| class_contains(&set, x)))
            }
            None => (1, Box::new(|x| x == '[')),
        },
        c => (1, Box::new(move |x| x == c)),
    };
    let next = pi + atom_len;
    match p.get(next) {
        Some('*') => {
            let mut k = ti;
            loop {
                if matches_at(p, next + 1, t, k) {
                    return true;
                }
                if k < t.len() && matches_char(t[k]) {
                    k += 1;
                } else {
                    return false;
                }
            }
        }
        Some('+') => {
            let mut k = ti;
            while k < t.len() && matches_char(t[k]) {
                k += 1;
                if matches_at(p, next + 1, t, k) {
                    return true;
                }
            }
            false
        }
        Some('?') => {
            (ti < t.len() && matches_char(t[ti]) && matches_at(p, next + 1, t, ti + 1))
                || matches_at(p, next + 1, t, ti)
        }
        _ => ti < t.len() && matches_char(t[ti]) && matches_at(p, next, t, ti + 1),
    }
}

fn class_contains(set: &[char], c: char) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_id_patterns() {
        assert!(glob_regex_match(
            "Debian 12.* amd64.*",
            "Debian 12.8.0 amd64 n"
        ));
        assert!(!glob_regex_match(
            "Debian 12.* amd64.*",
            "Debian 11.8.0 amd64 n"
        ));
        assert!(glob_regex_match(
            "Fedora-WS-Live-[0-9]+",
            "Fedora-WS-Live-4"
        ));
        assert!(glob_regex_match(
            "^Ubuntu 24\\.04.*$",
            "Ubuntu 24.04 LTS amd64"
        ));
        assert!(!glob_regex_match("^Ubuntu 24\\.04$", "Ubuntu 24.04 LTS"));
    }

    #[test]
    fn detects_from_an_osinfo_tree_and_an_iso() {
        let dir = std::env::temp_dir().join(format!("cove-osinfo-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("debian.org")).unwrap();
        std::fs::write(
            dir.join("debian.org/debian-12.xml"),
            r#"<libosinfo><os id="http://debian.org/debian/12"><name>Debian 12</name>
            <media arch="x86_64"><iso><volume-id>Debian 12.* amd64.*</volume-id></iso></media>
            <resources arch="all"><minimum><ram>536870912</ram></minimum>
            <recommended><n-cpus>2</n-cpus><ram>2147483648</ram><storage>21474836480</storage></recommended>
            </resources></os></libosinfo>"#,
        )
        .unwrap();
        let found = detect("Debian 12.8.0 amd64 n", &dir).unwrap();
        assert_eq!(
            found,
            DetectedOs {
                name: "Debian 12".into(),
                memory_mib: Some(2048),
                cpus: Some(2),
                disk_gib: Some(20),
            }
        );
        assert!(detect("Windows 11", &dir).is_none());
        // An ISO with that volume ID.
        let iso = dir.join("debian.iso");
        let mut image = vec![0u8; 17 * 2048];
        image[16 * 2048] = 1;
        image[16 * 2048 + 1..16 * 2048 + 6].copy_from_slice(b"CD001");
        let label = b"Debian 12.8.0 amd64 n";
        image[16 * 2048 + 40..16 * 2048 + 40 + label.len()].copy_from_slice(label);
        std::fs::write(&iso, &image).unwrap();
        assert_eq!(volume_id(&iso).unwrap(), "Debian 12.8.0 amd64 n");
        std::fs::write(&iso, vec![0u8; 40 * 1024]).unwrap();
        assert!(volume_id(&iso).is_err(), "not ISO 9660");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
