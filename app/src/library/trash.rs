//! Deleted VMs go to the library's trash folder first (`.trash/` under the library), so a
//! delete can be undone for a few seconds, as in GNOME Boxes; then they are purged. A purge
//! that never happened (the app was killed) is finished the next time the library opens.

use std::path::{Path, PathBuf};

/// The trash folder's name under the library root. Names starting with '.' are never VMs.
pub const TRASH_DIR: &str = ".trash";

/// Moves the VM folder `dir` into the trash of `root`; returns where it went.
pub fn move_to_trash(root: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let trash = root.join(TRASH_DIR);
    std::fs::create_dir_all(&trash)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vm".into());
    let target = trash.join(format!("{folder}.{stamp}"));
    std::fs::rename(dir, &target)?;
    Ok(target)
}

/// Puts a trashed folder back under `root` as `folder` (or a free variant of it); returns where.
pub fn restore(root: &Path, trashed: &Path, folder: &str) -> std::io::Result<PathBuf> {
    let target = super::free_folder(root, folder);
    std::fs::rename(trashed, &target)?;
    Ok(target)
}

/// Removes a trashed folder for good.
pub fn purge(trashed: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(trashed)
}

/// Purges everything left in the trash of `root`.
pub fn purge_all(root: &Path) {
    let trash = root.join(TRASH_DIR);
    let Ok(items) = std::fs::read_dir(&trash) else {
        return;
    };
    for item in items.flatten() {
        if let Err(e) = std::fs::remove_dir_all(item.path()) {
            log::warn!("cannot empty the trash ({}): {e}", item.path().display());
        }
    }
}
