//! The line at the end of the top bar: the outcome of the user's last action. The rule:
//!
//! 1. Each action's outcome replaces the line (there is only ever the latest).
//! 2. A success fades after [`SUCCESS_FOR`].
//! 3. An error stays until the user dismisses it (×), or until it no longer applies: one about
//!    a VM goes when that VM leaves the library (deleted), when its `vm.toml` changes (fixed),
//!    or when the VM runs; one about reading the library goes when a later read succeeds.
//!
//! A VM that fails to start says so in its own tab (and the library), not here.

use super::CoveApp;
use crate::library::Entry;
use emu::config::VmConfig;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a success stays in the top bar.
pub const SUCCESS_FOR: Duration = Duration::from_secs(8);

/// What a message is about, which decides when it stops applying.
#[derive(Clone, Debug, PartialEq)]
pub enum About {
    /// Nothing that can change under it.
    Nothing,
    /// The VM in this folder, as its `vm.toml` said when the message was made.
    Vm(PathBuf, Option<Box<VmConfig>>),
    /// Reading the library folder.
    Library,
}

/// The top bar's message.
#[derive(Clone, Debug)]
pub struct Message {
    pub text: String,
    pub error: bool,
    about: About,
    shown: Instant,
}

impl CoveApp {
    /// The top bar's text, if any.
    #[cfg(test)]
    pub fn message_text(&self) -> Option<&str> {
        self.message.as_ref().map(|m| m.text.as_str())
    }

    /// Says that an action succeeded.
    pub(super) fn say(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
            about: About::Nothing,
            shown: Instant::now(),
        });
    }

    /// Says that an action failed; `about` decides when the error stops applying.
    pub(super) fn warn(&mut self, text: impl Into<String>, about: About) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
            about,
            shown: Instant::now(),
        });
    }

    /// An error about the VM in `dir`, as its `vm.toml` says now.
    pub(super) fn about_vm(&self, dir: &std::path::Path) -> About {
        About::Vm(dir.to_path_buf(), self.config_of(dir).map(Box::new))
    }

    fn config_of(&self, dir: &std::path::Path) -> Option<VmConfig> {
        self.entries.iter().find_map(|e| match e {
            Entry::Vm(vm) if vm.dir == dir => Some(vm.config.clone()),
            _ => None,
        })
    }

    /// Drops the message once it no longer applies (the rule in the module comment).
    pub(super) fn prune_message(&mut self, library_read: Option<bool>) {
        let Some(message) = &self.message else {
            return;
        };
        let stale = match &message.about {
            _ if !message.error => message.shown.elapsed() >= SUCCESS_FOR,
            About::Nothing => false,
            About::Library => library_read == Some(true),
            About::Vm(dir, config) => {
                let running = self.running.iter().any(|r| &r.dir == dir && r.is_running());
                running || self.config_of(dir).map(Box::new) != *config
            }
        };
        if stale {
            self.message = None;
        }
    }

    /// The message, red when it is an error, with × to dismiss it.
    pub(super) fn message_ui(&mut self, ui: &mut egui::Ui) {
        let Some(message) = &self.message else {
            return;
        };
        ui.separator();
        if message.error {
            ui.colored_label(egui::Color32::from_rgb(0xe0, 0x40, 0x40), &message.text);
        } else {
            ui.label(&message.text);
            ui.ctx().request_repaint_after(SUCCESS_FOR);
        }
        if ui
            .small_button("×")
            .on_hover_text("Dismiss this message")
            .clicked()
        {
            self.message = None;
        }
    }
}
