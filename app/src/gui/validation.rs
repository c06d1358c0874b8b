//! The checks the creation wizard and the edit dialog show inline (names, files, and resources
//! within what this host has), and the resource fields both draw.

use crate::library::check_name;
use std::path::Path;

pub use crate::limits::HostLimits;

/// An empty, malformed or duplicate name.
pub fn name_error(name: &str, existing: &[String]) -> Option<String> {
    if name.trim().is_empty() {
        return Some("Give the VM a name.".into());
    }
    if check_name(name).is_err() {
        return Some(
            "Names are 1–64 characters, without '/', control characters or spaces at the ends."
                .into(),
        );
    }
    if existing.iter().any(|n| n == name) {
        return Some(format!("A VM named \"{name}\" already exists."));
    }
    None
}

/// A file that must exist and be readable.
pub fn file_error(what: &str, path: &str, required: bool) -> Option<String> {
    if path.trim().is_empty() {
        return required.then(|| format!("Choose the {what}."));
    }
    let path = Path::new(path.trim());
    match std::fs::File::open(path) {
        Ok(file) => match file.metadata() {
            Ok(meta) if meta.is_file() => None,
            Ok(_) => Some(format!("The {what} {} is not a file.", path.display())),
            Err(e) => Some(format!("Cannot read the {what} {}: {e}", path.display())),
        },
        Err(e) => Some(format!("Cannot read the {what} {}: {e}", path.display())),
    }
}

pub fn cpus_error(cpus: u32, limits: &HostLimits) -> Option<String> {
    limits.cpus_error(cpus)
}

pub fn memory_error(mib: u64, limits: &HostLimits) -> Option<String> {
    limits.memory_error(mib.saturating_mul(1 << 20))
}

/// A new disk of `gib` that the library's file system cannot hold as one file.
pub fn disk_size_error(gib: u64, dir: &Path) -> Option<String> {
    crate::limits::disk_size_error(gib.saturating_mul(1 << 30), dir)
}

/// The Name, CPUs and Memory (MiB) rows of a two-column grid, as the wizard and the Edit dialog
/// show them; the values are checked by the functions above when the user saves.
pub fn resource_fields(ui: &mut egui::Ui, name: &mut String, cpus: &mut u32, memory_mib: &mut u64) {
    let label = ui.label("Name");
    ui.text_edit_singleline(name).labelled_by(label.id);
    ui.end_row();
    let label = ui.label("CPUs");
    ui.add(egui::DragValue::new(cpus).range(0..=255))
        .labelled_by(label.id);
    ui.end_row();
    let label = ui.label("Memory (MiB)");
    ui.add(egui::DragValue::new(memory_mib).speed(64))
        .labelled_by(label.id);
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HostLimits = HostLimits {
        cpus: 4,
        memory_bytes: 8 << 30,
    };

    #[test]
    fn names() {
        let existing = vec!["web".to_string()];
        assert!(name_error("", &existing).unwrap().contains("name"));
        assert!(name_error("web", &existing)
            .unwrap()
            .contains("already exists"));
        assert!(name_error("a/b", &existing).is_some());
        assert!(name_error("db", &existing).is_none());
    }

    #[test]
    fn files_and_limits() {
        assert!(file_error("kernel", "", true).is_some());
        assert!(file_error("initrd", "", false).is_none());
        assert!(file_error("kernel", "/no/such/file", true)
            .unwrap()
            .contains("Cannot read"));
        assert!(file_error("kernel", "/", true)
            .unwrap()
            .contains("not a file"));
        assert!(cpus_error(0, &LIMITS).is_some());
        assert!(cpus_error(5, &LIMITS).unwrap().contains("choose 1 to 4"));
        assert!(cpus_error(4, &LIMITS).is_none());
        assert!(memory_error(9000, &LIMITS).is_some());
        assert!(memory_error(32, &LIMITS).is_some());
        assert!(memory_error(2048, &LIMITS).is_none());
        assert!(disk_size_error(1 << 40, &std::env::temp_dir()).is_some());
    }
}
