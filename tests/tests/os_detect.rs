//! `cove detect-os` against the installed osinfo-db: ISOs made here with `xorriso -V LABEL`
//! for real installer labels are detected as the osinfo short ID that an independent
//! implementation (Python's `re` and ElementTree over the same XML, tests/osinfo/expected.py)
//! gives.

use cove_tests::{cove_binary, workspace_root, ScratchDir};
use std::process::Command;

const LABELS: &[&str] = &[
    "Fedora-WS-Live-39-1-5",
    "Ubuntu 22.04.3 LTS amd64",
    "Debian 11.8.0 amd64 n",
    "CCCOMA_X64FRE_EN-US_DV9",
    "Debian 12.2.0 amd64 n",
    "Fedora-S-dvd-x86_64-37",
    "openSUSE-Leap-15.4-DVD-x86_64",
    "ARCH_202301",
    "no such OS anywhere",
];

#[test]
fn real_installer_labels_are_detected_as_osinfo_says() {
    let osinfo = std::path::Path::new("/usr/share/osinfo/os");
    assert!(
        osinfo.is_dir(),
        "osinfo-db is not installed (scripts/setup.sh installs it)"
    );
    let scratch = ScratchDir::new("os-detect");
    let content = scratch.path("content");
    std::fs::create_dir_all(&content).unwrap();
    std::fs::write(content.join("README"), b"test").unwrap();
    let mut isos = Vec::new();
    for (i, label) in LABELS.iter().enumerate() {
        let iso = scratch.path(&format!("{i}.iso"));
        let mut made = Command::new("xorriso");
        made.args(["-as", "mkisofs", "-quiet", "-V", label]);
        // Windows media carry Microsoft's publisher ID, and osinfo asks for it.
        if label.starts_with("CCCOMA") {
            made.args(["-publisher", "MICROSOFT CORPORATION"]);
        }
        let made = made
            .arg("-o")
            .arg(&iso)
            .arg(&content)
            .output()
            .expect("xorriso (scripts/setup.sh installs it)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        isos.push(iso);
    }
    let expected = Command::new("python3")
        .arg(workspace_root().join("tests/osinfo/expected.py"))
        .arg(osinfo)
        .args(&isos)
        .output()
        .unwrap();
    assert!(
        expected.status.success(),
        "{}",
        String::from_utf8_lossy(&expected.stderr)
    );
    let expected = String::from_utf8(expected.stdout).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), LABELS.len());
    let mut known = 0;
    for ((label, iso), want) in LABELS.iter().zip(&isos).zip(expected) {
        let out = Command::new(cove_binary())
            .arg("detect-os")
            .arg(iso)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let got = out.split('\t').next().unwrap_or("").trim();
        assert_eq!(got, want, "{label}: cove said {out:?}");
        if want == "unknown" {
            assert!(out.contains(label), "{out}");
        } else {
            known += 1;
        }
        eprintln!("{label:?} -> {}", out.trim());
    }
    // The labels the library issue named are real installers that osinfo-db knows.
    assert!(known >= 5, "only {known} labels were recognised");
    // Not an ISO: a clear error.
    let out = Command::new(cove_binary())
        .arg("detect-os")
        .arg(content.join("README"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a readable ISO image"));
}
