//! What the app changes in the library: VMs created by the wizard (with their disk copies),
//! copies finished into the current `vm.toml`, and deletes that can be undone for
//! [`UNDO_DELETE_FOR`].

use super::disk_copy::DiskCopy;
use super::message::About;
use super::wizard::Outcome;
use super::CoveApp;
use crate::library::run_lock::Activity;
use std::time::{Duration, Instant};

/// How long a delete can be undone.
const UNDO_DELETE_FOR: Duration = Duration::from_secs(10);

impl CoveApp {
    /// Acts on the wizard's answer: creates the VM (and starts copying its disk) or closes it.
    pub(super) fn finish_wizard(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Continue => {}
            Outcome::Cancel => self.wizard = None,
            Outcome::Create {
                config,
                new_disk_bytes,
                copy_disk,
            } => {
                let name = config.name.clone();
                match self.library.create(config, new_disk_bytes) {
                    Ok(entry) => {
                        self.wizard = None;
                        self.say(format!("created {name}"));
                        if let Some(source) = copy_disk {
                            match self
                                .library
                                .lock(&entry, "the Cove app", Activity::CopyingDisk)
                            {
                                Ok(lock) => self.copies.push(DiskCopy::start(source, &entry, lock)),
                                Err(e) => {
                                    let about = self.about_vm(&entry.dir);
                                    self.warn(format!("cannot copy the disk: {e}"), about)
                                }
                            }
                        }
                        self.refresh();
                    }
                    Err(e) => self.warn(format!("cannot create {name}: {e}"), About::Nothing),
                }
            }
        }
    }

    /// Finishes copies that ended: each adds its disk to what its VM's `vm.toml` says now, so
    /// edits made meanwhile survive. Also empties the trash once a delete can no longer be
    /// undone.
    pub(super) fn poll_copy(&mut self) {
        let mut finished = Vec::new();
        self.copies.retain(|copy| match copy.poll() {
            Some(result) => {
                finished.push((copy.name().to_string(), copy.dir().to_path_buf(), result));
                false
            }
            None => true,
        });
        for (name, dir, result) in finished {
            let outcome = result.and_then(|disk| {
                self.library
                    .add_first_disk(&dir, disk)
                    .map_err(|e| e.to_string())
            });
            match outcome {
                Ok(()) => self.say(format!("copied the disk of {name}")),
                Err(e) => {
                    let about = self.about_vm(&dir);
                    self.warn(format!("copying the disk of {name} failed: {e}"), about)
                }
            }
            self.refresh();
        }
        if let Some((trashed, until)) = &self.undo_delete {
            if Instant::now() >= *until {
                if let Err(e) = crate::library::trash::purge(&trashed.path) {
                    log::warn!("cannot empty the trash: {e}");
                }
                self.undo_delete = None;
            }
        }
    }

    /// Deletes the VM `name` into the trash, restorable for [`UNDO_DELETE_FOR`].
    pub(super) fn delete_vm(&mut self, name: &str) {
        self.finish_pending_delete();
        match self.library.delete(name, "the Cove app") {
            Ok(trashed) => {
                self.say(format!("deleted {name}"));
                self.undo_delete = Some((trashed, Instant::now() + UNDO_DELETE_FOR));
            }
            Err(e) => self.warn(e.to_string(), About::Nothing),
        }
        self.refresh();
    }

    /// Brings back the VM deleted last.
    pub(super) fn restore_deleted(&mut self) {
        if let Some((trashed, _)) = self.undo_delete.take() {
            match self.library.restore(&trashed) {
                Ok(_) => self.say(format!("restored {}", trashed.name)),
                Err(e) => self.warn(
                    format!("cannot restore {}: {e}", trashed.name),
                    About::Nothing,
                ),
            }
            self.refresh();
        }
    }

    /// Purges the previous delete now (a new one replaces its undo).
    fn finish_pending_delete(&mut self) {
        if let Some((trashed, _)) = self.undo_delete.take() {
            if let Err(e) = crate::library::trash::purge(&trashed.path) {
                log::warn!("cannot empty the trash: {e}");
            }
        }
    }
}
